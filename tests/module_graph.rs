//! No two modules of `src/` import each other, directly or around a ring: a reader can take
//! the modules in an order where each uses only what came before. Reads the source as text:
//! every `crate::`/`super::` path outside `#[cfg(test)] mod tests` is an edge to the longest
//! module it names, and a folder's `mod.rs` has an edge to each child it names. A child
//! reaching up into its own folder's `mod.rs` is not counted: that is where the folder says
//! what it is. Needs no tool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `(module path, source)` for every file under `dir`, `mod.rs` standing for its folder.
fn read_modules(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .expect("under src")
                .with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read file");
            out.push((parts.join("::"), text));
        }
    }
    out
}

/// The source without its unit tests and line comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names from `crate::` or `super::`, `use` groups expanded one level.
fn paths(code: &str) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
                continue;
            }
            let len = code[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - i);
            let base = code[i..i + len].trim_end_matches(':').to_owned();
            if code[i + len..].starts_with('{') {
                let inner = &code[i + len + 1..];
                let mut depth = 0;
                let mut item = String::new();
                for c in inner.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.push(group_item(&base, &item));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                out.push(group_item(&base, &item));
            }
            out.push(base);
        }
    }
    out
}

fn group_item(base: &str, item: &str) -> String {
    let item = item.trim();
    let item = item.split(" as ").next().unwrap_or("");
    let item = item.split("::{").next().unwrap_or("");
    match item {
        "" | "self" => base.to_owned(),
        _ => format!("{base}::{item}"),
    }
}

/// The longest known module `path` names, seen from module `from`.
fn resolve<'a>(from: &str, path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    let mut parts: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = Vec::new();
    if parts.first() == Some(&"crate") {
        parts.remove(0);
    } else {
        base = from.split("::").collect();
        while parts.first() == Some(&"super") {
            parts.remove(0);
            base.pop();
        }
    }
    (1..=parts.len()).rev().find_map(|n| {
        let name: Vec<&str> = base.iter().chain(&parts[..n]).copied().collect();
        modules.get(&name.join("::"))
    })
}

/// The rings of modules that import one another (each sorted), in `files`.
fn cycles(files: &[(String, String)]) -> Vec<Vec<String>> {
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (module, text) in files {
        let code = code_of(text);
        let targets = edges.entry(module).or_default();
        for path in paths(&code) {
            if let Some(to) = resolve(module, &path, &modules)
                && to != module
                && !module.starts_with(&format!("{to}::"))
            {
                targets.insert(to);
            }
        }
        // A folder's mod.rs naming its own children (`child::x`, `use child::...`).
        for child in &modules {
            let Some(name) = child.strip_prefix(&format!("{module}::")) else {
                continue;
            };
            if name.contains("::") {
                continue;
            }
            let named = code.match_indices(&format!("{name}::")).any(|(i, _)| {
                i == 0 || !matches!(code.as_bytes()[i - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b':')
            });
            if named {
                targets.insert(child);
            }
        }
    }
    // Tarjan's strongly connected components.
    struct State<'a> {
        edges: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for &w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut ring = Vec::new();
            while let Some(w) = s.stack.pop() {
                ring.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if ring.len() > 1 {
                ring.sort();
                s.found.push(ring);
            }
        }
    }
    let mut state = State {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for &v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn no_two_modules_import_each_other() {
    let files = read_modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(files.len() > 50, "read only {} modules", files.len());
    let found = cycles(&files);
    assert!(found.is_empty(), "import rings: {found:?}");
}

#[test]
fn the_check_finds_a_ring_through_a_use_group_and_one_through_a_folder() {
    let file = |m: &str, t: &str| (m.to_owned(), t.to_owned());
    // a -> b (a use group) -> c -> a.
    let ring = [
        file("a", "use crate::{b::Thing, other};"),
        file("b", "fn f() { crate::c::g(); }"),
        file("c", "use super::a::X;"),
        file("other", ""),
    ];
    assert_eq!(cycles(&ring), vec![vec!["a", "b", "c"]]);
    // A folder naming its child, the child importing a sibling that imports the folder's
    // child back: proxy -> proxy::x -> proxy::y -> proxy::x.
    let folder = [
        file("proxy", "mod x;\nfn f() { x::go(); }"),
        file("proxy::x", "use super::y::Y;"),
        file("proxy::y", "use super::x::X;"),
    ];
    assert_eq!(cycles(&folder), vec![vec!["proxy::x", "proxy::y"]]);
    // Unit tests and comments do not count, nor does a child reaching up into its folder.
    let clean = [
        file(
            "a",
            "// use crate::b::X;\n#[cfg(test)]\nmod tests { use crate::b::Y; }",
        ),
        file("b", "use crate::a::Z;"),
        file("p", "use p_child::Q;"),
        file("p::p_child", "use super::Settings;"),
    ];
    assert!(cycles(&clean).is_empty());
}
