//! The skip mechanism itself (tests/common/tools.rs, build.rs): what build.rs probed still holds
//! when the tests run (its rerun conditions saw every change), every test that needs a tool is
//! marked the way cargo counts, and none returns early instead. Needs no tool, and runs no cargo.

#[path = "common/tools.rs"]
#[allow(unreachable_pub)] // the harness's, where they are `pub`
mod tools;

use std::path::Path;

/// The tools build.rs found, as it told rustc.
fn found_at_build() -> Vec<&'static str> {
    env!("RINGTLS_TOOLS_FOUND")
        .split(',')
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn build_probe_agrees_with_this_host() {
    let at_build = found_at_build();
    let mut stale = Vec::new();
    let mut missing = Vec::new();
    for tool in tools::TOOLS {
        let now = tool.probe();
        if let Err(why) = &now {
            missing.push(format!("{}: {why} ({})", tool.name, tool.remedy));
        }
        match (at_build.contains(&tool.name), &now) {
            (true, Err(why)) => stale.push(format!("{}: found at build, now {why}", tool.name)),
            (false, Ok(())) => stale.push(format!("{}: missing at build, found now", tool.name)),
            _ => {}
        }
    }
    assert!(
        stale.is_empty(),
        "build.rs's probe is out of date (it reruns when PATH, the PATH directories, /etc/hosts \
         or the linker cache change; `touch build.rs` forces it):\n{}",
        stale.join("\n")
    );
    assert!(
        !tools::required() || missing.is_empty(),
        "{}=1 and this host lacks:\n{}",
        tools::REQUIRE,
        missing.join("\n")
    );
}

#[test]
fn every_tool_test_is_ignored_with_a_skipped_reason_and_checks_at_run_time() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut problems = Vec::new();
    let mut marked = 0;
    for file in rust_files(&dir) {
        let text = std::fs::read_to_string(&file).expect("read test source");
        let name = file
            .strip_prefix(&dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        if name == "tools.rs" || name == "common/tools.rs" || name == "common/process.rs" {
            continue;
        }
        problems.extend(lint(&name, &text));
        marked += text.matches("not(has = \"").count();
    }
    assert!(
        problems.is_empty(),
        "tests that would pass without testing (recipe: tests/common/mod.rs):\n{}",
        problems.join("\n")
    );
    assert!(
        marked > 0,
        "no test carries cfg_attr(not(has = ...)): the lint reads nothing"
    );
}

#[test]
fn the_lint_catches_an_early_return_and_a_mismatched_need() {
    let early = "#[test]\nfn t() {\n    if !have_program(\"curl\") {\n        \
                 eprintln!(\"SKIPPED: curl not found\");\n        return;\n    }\n}\n";
    assert_eq!(lint("x.rs", early).len(), 2, "{:?}", lint("x.rs", early));
    let mismatched = "#[test]\n#[cfg_attr(not(has = \"curl\"), ignore = \"SKIPPED: curl\")]\n\
                      fn t() {\n    common::need(\"openssl\");\n}\n";
    assert_eq!(lint("x.rs", mismatched).len(), 1);
    let unreasoned = "#[test]\n#[cfg_attr(not(has = \"curl\"), ignore = \"curl missing\")]\n\
                      fn t() {\n    common::need(\"curl\");\n}\n";
    assert_eq!(lint("x.rs", unreasoned).len(), 1);
    let good = "#[test]\n#[cfg_attr(not(has = \"curl\"), ignore = \"SKIPPED: curl\")]\n\
                fn t() {\n    common::need(\"curl\");\n}\n";
    assert_eq!(lint("x.rs", good), Vec::<String>::new());
}

/// What is wrong in one test source: a skip that returns (and so passes), and a
/// `cfg_attr(not(has = "X"), ignore = ...)` whose reason does not start with `SKIPPED:` (.ci/run
/// counts those) or whose test does not call `need("X")` before the next test.
fn lint(name: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let at = format!("{name}:{}", i + 1);
        if line.contains("eprintln!(\"SKIPPED") {
            problems.push(format!(
                "{at}: prints SKIPPED and goes on (it passes): {}",
                line.trim()
            ));
        }
        if line.contains("have_program(") {
            problems.push(format!(
                "{at}: have_program: mark the test with `has` instead"
            ));
        }
    }
    let marker = "not(has = \"";
    let mut rest = text;
    while let Some(start) = rest.find(marker) {
        let before = &text[..text.len() - rest.len() + start];
        let line = before.lines().count();
        rest = &rest[start + marker.len()..];
        let tool = rest.split('"').next().unwrap_or("");
        let attr = rest.split(")]").next().unwrap_or("");
        if !attr.contains("ignore = \"SKIPPED: ") {
            problems.push(format!(
                "{name}:{line}: the ignore reason for {tool} must start with \"SKIPPED: \""
            ));
        }
        let body = rest.split("#[test]").next().unwrap_or("");
        if !body.contains(&format!("need(\"{tool}\")")) {
            problems.push(format!(
                "{name}:{line}: marked for {tool} but does not call common::need(\"{tool}\")"
            ));
        }
    }
    problems
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read tests/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}
