//! The `ringtls` binary: parse flags, validate, run; print one error line and exit with a stable
//! code (0 ok, 64 usage, 78 bad configuration or credentials, 1 runtime failure).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use ringtls::cli::{Cli, Command};
use ringtls::sys::signals::Signals;
use ringtls::{Error, ServeConfig, config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("ringtls");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cli = match Cli::from_args(&[name], &rest) {
        Ok(cli) => cli,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}", early.output.trim_end());
                    eprintln!("Run {name} --help for usage.");
                    ExitCode::from(64)
                }
            };
        }
    };
    let result = run(cli.command);
    // The last events (a drain's summary, a refused start's warnings) are queued for the log
    // writer: let it write them, unless stderr is stalled.
    ringtls::telemetry::log::flush(Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringtls: error: {}", ringtls::cause::Chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Serve(args) => {
            let config = ServeConfig::from_args(args)?;
            // Before any thread starts, so that every thread inherits the mask (see `signals`).
            let signals = Signals::block().map_err(Error::io("cannot block signals"))?;
            let control = Arc::new(ringtls::start(&config)?);
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", ringtls::listening_line(control.server()))
                .and_then(|()| stdout.flush())
                .map_err(Error::io("cannot write the listening line to stdout"))?;
            drop(stdout);
            control.run(&signals).map(|()| ExitCode::SUCCESS)
        }
        Command::Check(args) => match config::check_target(args)? {
            config::CheckTarget::Flags(files) => {
                let material = ringtls::tls::load_tls(&files)?;
                ringtls::log_trust_warnings("default", &material);
                print!("{}", ringtls::tools::check::report(&files, &material));
                Ok(ExitCode::SUCCESS)
            }
            config::CheckTarget::File(path, loaded) => {
                print!("{}", ringtls::tools::check::report_file(&path, &loaded)?);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Pki(args) => {
            let plan = ringtls::tools::pki::pki_plan(args)?;
            for path in ringtls::tools::pki::write_pki(&plan)? {
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(args) => {
            let plan = ringtls::tools::load::load_plan(args)?;
            ringtls::tools::load::run_load(plan).map(|_| ExitCode::SUCCESS)
        }
        Command::Upstream(args) => {
            let addr = args
                .listen
                .parse()
                .map_err(|_| Error::Usage(format!("--listen {}: expected IP:PORT", args.listen)))?;
            let mode = ringtls::tools::peer::PeerMode::parse(&args.mode)?;
            ringtls::tools::peer::run_peer(addr, mode, |bound| {
                println!("{{\"listening\":[\"{bound}\"]}}");
            })
            .map(|()| ExitCode::SUCCESS)
        }
        Command::Healthcheck(args) => {
            ringtls::tools::healthcheck::run_healthcheck(&args.metrics, &args.path)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Demo(_) => ringtls::tools::demo::run_demo().map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
    }
}
