//! The architecture as a test: the module dependency graph, derived from the `crate::` and
//! `super::` paths in `src/`, must point one way, down the layers docs/development.md's "Layout" section
//! lists, and no two files may depend on each other through any chain. Test code (`#[cfg(test)]`
//! modules and files) is left out: a test may build its fixtures from any layer.
//!
//! Also held here because no lint does it: no struct of the program has more than 15 fields.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A module may use modules of lower layers only, never one of its own layer.
const LAYERS: &[&[&str]] = &[
    &["say", "human", "protocol", "allocator", "files"],
    &["model", "data", "telemetry", "dist", "interop"],
    &["config"],
    &["run"],
    &["eval", "train"],
    &["control"],
    &["tui"],
    &["cmd"],
];

const MAX_STRUCT_FIELDS: usize = 15;

/// One source file: its module path (`["eval", "knn"]`) and its non-test code.
struct Source {
    module: Vec<String>,
    file: PathBuf,
    code: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// Removes comments, string and char literals (their text is not code), keeping line breaks.
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map(|e| i + 2 + e + 2).unwrap_or(b.len());
            out.extend(text[i..end].chars().filter(|&c| c == '\n'));
            i = end;
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) && !prev_is_ident(b, i) {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = text[start..].find(&close).map(|e| start + e + close.len()).unwrap_or(b.len());
            out.push_str("\"\"");
            out.extend(text[i..end].chars().filter(|&c| c == '\n'));
            i = end;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                } else if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if b[i] == b'\'' && char_literal_len(&b[i..]).is_some() {
            out.push_str("' '");
            i += char_literal_len(&b[i..]).unwrap_or(1);
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Length of a char literal starting at `b[0] == '\''`, or None for a lifetime.
fn char_literal_len(b: &[u8]) -> Option<usize> {
    if b.get(1) == Some(&b'\\') {
        let close = b[2..].iter().position(|&c| c == b'\'')?;
        return Some(close + 3);
    }
    let s = std::str::from_utf8(&b[1..b.len().min(6)]).unwrap_or_else(|e| std::str::from_utf8(&b[1..1 + e.valid_up_to()]).unwrap());
    let c = s.chars().next()?;
    (s[c.len_utf8()..].starts_with('\'')).then(|| 2 + c.len_utf8())
}

/// Cuts `#[cfg(test)]` items out: an inline `mod name { ... }` to its closing brace, or a
/// `mod name;` declaration (its file is test code, reported back in `test_files`).
fn strip_test_items(code: &str, test_files: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let item_end = after.find(['{', ';']).unwrap_or(after.len());
        if after.as_bytes().get(item_end) == Some(&b';') {
            if let Some(name) = after[..item_end].split_whitespace().last() {
                test_files.push(name.to_string());
            }
            rest = &after[item_end + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices().skip(item_end) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.extend(after[..end].chars().filter(|&c| c == '\n'));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into full paths.
fn expand_use_tree(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut path = prefix.to_vec();
        path.extend(tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use_tree(&path, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use_tree(&path, &inner[start..], out);
    } else if !tree.is_empty() {
        let mut path = prefix.to_vec();
        let tree = tree.split(" as ").next().unwrap_or(tree);
        path.extend(tree.split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        out.push(path);
    }
}

/// Every path the code names, as written: `use` trees expanded, plus inline `crate::`/`super::`
/// paths.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let boundary = at == 0 || !is_ident(rest[..at].chars().last().unwrap_or(' '));
        if boundary {
            if let Some(end) = rest[at..].find(';') {
                expand_use_tree(&[], &rest[at + 4..at + end], &mut out);
            }
        }
        rest = &rest[at + 4..];
    }
    for root in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(root) {
            let boundary = at == 0 || !is_ident(rest[..at].chars().last().unwrap_or(' '));
            let tail = &rest[at..];
            let len = tail.find(|c: char| !(is_ident(c) || c == ':')).unwrap_or(tail.len());
            if boundary && !rest[..at].ends_with('$') {
                out.push(tail[..len].split("::").filter(|s| !s.is_empty()).map(String::from).collect());
            }
            rest = &rest[at + root.len()..];
        }
    }
    out
}

/// A path as written in `module`, made absolute (from the crate root); None for paths outside
/// the crate (std, tch, ...).
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    match path.first().map(String::as_str) {
        Some("crate") => Some(path[1..].to_vec()),
        Some("super") => {
            // In `a/b.rs` and in `a/b/mod.rs` (both module a::b) `super` is `a`.
            let mut base = module.to_vec();
            let mut p = path;
            while p.first().map(String::as_str) == Some("super") {
                base.pop()?;
                p = &p[1..];
            }
            base.extend(p.iter().cloned());
            Some(base)
        }
        Some("self") => {
            let mut base = module.to_vec();
            base.extend(path[1..].iter().cloned());
            Some(base)
        }
        _ => None,
    }
}

fn load_sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let mut test_modules: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut sources = vec![];
    for file in files {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let mut test_files = vec![];
        let code = strip_test_items(&strip_comments_and_strings(&text), &mut test_files);
        for t in test_files {
            let mut m = module.clone();
            m.push(t);
            test_modules.insert(m);
        }
        sources.push(Source { module, file, code });
    }
    sources.retain(|s| !test_modules.iter().any(|t| s.module.starts_with(t)));
    sources
}

/// The longest known module that is a prefix of `path` (the rest names an item in it).
fn owning_module(known: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| known.contains(p))
}

/// Module → modules it names, both as full module paths.
fn module_graph(sources: &[Source]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let known: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for s in sources {
        let deps = graph.entry(s.module.clone()).or_default();
        for p in paths_in(&s.code) {
            let Some(abs) = resolve(&s.module, &p) else { continue };
            // `crate::say!` and `crate::say_err!` are macros defined in say.rs.
            let abs = if matches!(abs.first().map(String::as_str), Some("say" | "say_err")) { vec!["say".to_string()] } else { abs };
            if let Some(target) = owning_module(&known, &abs) {
                // A module naming its own children (`pub use` of its items) is not a dependency.
                if target != s.module && !target.starts_with(&s.module) {
                    deps.insert(target);
                }
            }
        }
    }
    graph
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

#[test]
fn dependencies_point_down_the_layers() {
    let sources = load_sources();
    let graph = module_graph(&sources);
    let mut bad = vec![];
    for (from, deps) in &graph {
        let Some(top) = from.first() else { continue };
        let Some(mine) = layer_of(top) else {
            bad.push(format!("src/{top} is in no layer of tests/layers.rs (add it where it belongs)"));
            continue;
        };
        for to in deps {
            let other = &to[0];
            if other == top {
                continue;
            }
            match layer_of(other) {
                Some(theirs) if theirs < mine => {}
                _ => bad.push(format!(
                    "{} uses {} (layer of {top} is {mine}, of {other} {:?})",
                    from.join("::"),
                    to.join("::"),
                    layer_of(other)
                )),
            }
        }
    }
    assert!(bad.is_empty(), "dependencies that point up or sideways:\n{}", bad.join("\n"));
}

/// Tarjan's strongly connected components over the file graph; any component of two or more
/// files is a cycle.
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        found: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            // Edges to a parent module (`super::Error`) are part of the parent, not a cycle.
            if v.starts_with(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                if graph.contains_key(w) {
                    let (key, _) = graph.get_key_value(w).unwrap();
                    visit(s, key);
                    let low = s.low[v].min(s.low[key]);
                    s.low.insert(v, low);
                }
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = vec![];
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.found.push(comp);
            }
        }
    }
    let mut s = State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on_stack: BTreeSet::new(), found: vec![] };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn no_two_files_depend_on_each_other() {
    let graph = module_graph(&load_sources());
    let found = cycles(&graph);
    let shown: Vec<String> = found.iter().map(|c| c.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" <-> ")).collect();
    assert!(found.is_empty(), "import cycles:\n{}", shown.join("\n"));
}

#[test]
fn the_graph_sees_what_the_code_names() {
    // The checks above are only as good as the parser: it must find grouped, nested, aliased and
    // inline paths, resolve `super::`, and ignore comments, strings and test modules.
    let code = strip_test_items(
        &strip_comments_and_strings(
            "use crate::{a::{b, c::D}, e as f};\nuse super::g::H;\n// use crate::nope;\nlet s = \"crate::nope2\";\nlet c = '{';\nfn x() { crate::i::j(); }\n#[cfg(test)]\nmod tests { use crate::nope3; }\n",
        ),
        &mut vec![],
    );
    let paths: Vec<String> = paths_in(&code).iter().map(|p| p.join("::")).collect();
    for want in ["crate::a::b", "crate::a::c::D", "crate::e", "super::g::H", "crate::i::j"] {
        assert!(paths.contains(&want.to_string()), "{want} missing from {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains("nope")), "{paths:?}");
    let m = vec!["eval".to_string(), "knn".to_string()];
    assert_eq!(resolve(&m, &["super".into(), "features".into()]), Some(vec!["eval".into(), "features".into()]));
    let known: BTreeSet<Vec<String>> = [vec!["eval".to_string()], m.clone()].into();
    assert_eq!(owning_module(&known, &["eval".into(), "knn".into(), "knn_report".into()]), Some(m));
    // A two-file cycle is found.
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let graph = BTreeMap::from([(a.clone(), BTreeSet::from([b.clone()])), (b.clone(), BTreeSet::from([a.clone()]))]);
    assert_eq!(cycles(&graph).len(), 1);
}

/// Fields of each non-test struct with named fields, by name.
fn struct_fields(code: &str) -> Vec<(String, usize)> {
    let mut out = vec![];
    let mut rest = code;
    while let Some(at) = rest.find("struct ") {
        let boundary = at == 0 || !is_ident(rest[..at].chars().last().unwrap_or(' '));
        let tail = &rest[at + 7..];
        rest = tail;
        if !boundary {
            continue;
        }
        let name: String = tail.chars().take_while(|&c| is_ident(c)).collect();
        let Some(open) = tail.find(['{', ';', '(']) else { continue };
        if tail.as_bytes()[open] != b'{' {
            continue;
        }
        let (mut depth, mut count, mut top_level_start) = (0i32, 0, true);
        for c in tail[open..].chars() {
            match c {
                '{' | '(' | '<' | '[' => depth += 1,
                '}' | ')' | '>' | ']' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ':' if depth == 1 && top_level_start => {
                    count += 1;
                    top_level_start = false;
                }
                ',' if depth == 1 => top_level_start = true,
                _ => {}
            }
        }
        out.push((name, count));
    }
    out
}

#[test]
fn no_struct_has_more_than_fifteen_fields() {
    let mut big = vec![];
    for s in load_sources() {
        // `::` in a field's type would count as a field, `->` as a closing bracket.
        let code = s.code.replace("::", "_").replace("->", "");
        for (name, n) in struct_fields(&code) {
            if n > MAX_STRUCT_FIELDS {
                big.push(format!("{} in {}: {n} fields", name, s.file.display()));
            }
        }
    }
    assert!(big.is_empty(), "structs over {MAX_STRUCT_FIELDS} fields (group them):\n{}", big.join("\n"));
    assert_eq!(struct_fields("pub struct A { a: u8, pub b: Vec<(u8, u8)>, c: fn(u8) }"), vec![("A".into(), 3)]);
}

/// No machine's paths in the code: shared data is found relative to the manifest (`../shared`),
/// so a clone anywhere runs the tests, examples and scripts.
#[test]
fn no_absolute_paths_of_one_machine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Built at run time, so this file does not match itself.
    let markers: Vec<String> =
        ["work", "root"].iter().flat_map(|d| [format!("\"/{d}/"), format!("'/{d}/")]).chain([format!(" /{}/shared", "work")]).collect();
    let mut found = vec![];
    let mut stack: Vec<std::path::PathBuf> = ["src", "tests", "examples", "scripts"].iter().map(|d| root.join(d)).collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else { continue };
        for (i, line) in text.lines().enumerate() {
            if markers.iter().any(|m| line.contains(m.as_str())) {
                found.push(format!("{}:{}: {}", p.strip_prefix(root).unwrap().display(), i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "absolute paths of one machine:\n{}", found.join("\n"));
}
