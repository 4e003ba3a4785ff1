//! The floors of `gateway/src` (docs/architecture.md), checked on the source: imports point down,
//! no two files import each other through any path, and only delivery emits to rooms.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// Every source file of the library (not `main.rs`), by its path under `src/`, without its
/// comments and its unit tests.
fn sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(&root)
                    .expect("under src")
                    .to_string_lossy()
                    .into_owned();
                if rel != "main.rs" {
                    let text = fs::read_to_string(&path).expect("a source file");
                    files.insert(rel, code_of(&text));
                }
            }
        }
    }
    files
}

/// The code of a file: line comments dropped, and everything from its unit tests on.
fn code_of(text: &str) -> String {
    let code: Vec<&str> = text
        .lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect();
    let code = code.join("\n");
    match code.find("#[cfg(test)]\nmod tests") {
        Some(at) => code[..at].to_owned(),
        None => code,
    }
}

/// The module path of a file: `realtime/io.rs` is `realtime::io`, `realtime/mod.rs` is `realtime`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The paths a `use` tree names: `a::{b, c::{d}}` is `a::b` and `a::c::d`.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut base = prefix.to_vec();
        base.extend(
            tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from),
        );
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else if !tree.is_empty() {
        let name = tree.split(" as ").next().unwrap_or(tree);
        let mut path = prefix.to_vec();
        path.extend(
            name.split("::")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from),
        );
        out.push(path);
    }
}

/// Which files each file imports (through `use`, or a `crate::` path in its code).
fn imports(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let by_module: BTreeMap<Vec<String>, String> =
        files.keys().map(|f| (module_of(f), f.clone())).collect();
    // The file of the longest module prefix of `path`.
    let resolve = |path: &[String]| {
        (0..=path.len())
            .rev()
            .find_map(|n| by_module.get(&path[..n]).cloned())
    };
    let mut graph = BTreeMap::new();
    for (file, code) in files {
        let me = module_of(file);
        let mut paths = Vec::new();
        // `use` statements: a line opening with `use` (or `pub use`), up to its `;`.
        let mut offset = 0;
        for line in code.split_inclusive('\n') {
            let opening = line.trim_start();
            let visible = ["pub(crate) ", "pub(super) ", "pub "]
                .iter()
                .find_map(|p| opening.strip_prefix(p))
                .unwrap_or(opening);
            if let Some(rest) = visible.strip_prefix("use ") {
                let start = offset + (line.len() - rest.len());
                let end = code[start..].find(';').map_or(code.len(), |e| start + e);
                expand(&[], &code[start..end], &mut paths);
            }
            offset += line.len();
        }
        for (at, _) in code.match_indices("crate::") {
            let rest: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(
                rest.split("::")
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
        let mut deps = BTreeSet::new();
        for path in paths {
            let target = match path.first().map(String::as_str) {
                Some("crate") => resolve(&path[1..]),
                Some("super") => {
                    let mut base = me.clone();
                    let mut rest = &path[..];
                    while rest.first().is_some_and(|p| p == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    resolve(&base)
                }
                Some("self") => resolve(&[me.clone(), path[1..].to_vec()].concat()),
                Some(first)
                    if by_module.contains_key(&[me.clone(), vec![first.to_owned()]].concat()) =>
                {
                    resolve(&[me.clone(), path.clone()].concat())
                }
                _ => None,
            };
            if let Some(target) = target.filter(|t| t != file) {
                deps.insert(target);
            }
        }
        graph.insert(file.clone(), deps);
    }
    graph
}

#[test]
fn lower_floors_import_nothing_from_the_socket_side_the_api_or_the_composition_root() {
    let lower = [
        "state/",
        "store/",
        "telemetry/",
        "config.rs",
        "clock.rs",
        "settings.rs",
    ];
    let storage_half_of_recovery = ["recovery/log.rs", "recovery/offset.rs", "recovery/mod.rs"];
    let upper = ["realtime/", "internal/", "app/"];
    let mut upward = Vec::new();
    for (file, deps) in imports(&sources()) {
        let is_lower = lower.iter().any(|l| file.starts_with(l))
            || storage_half_of_recovery.contains(&file.as_str());
        for dep in deps
            .iter()
            .filter(|d| is_lower && upper.iter().any(|u| d.starts_with(u)))
        {
            upward.push(format!("{file} -> {dep}"));
        }
    }
    assert!(upward.is_empty(), "imports pointing up: {upward:#?}");
}

#[test]
fn no_two_files_import_each_other_through_any_path() {
    let graph = imports(&sources());
    // A file is on a circle when it reaches itself.
    let mut circles = BTreeSet::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(next) = todo.pop() {
            if next == start {
                circles.insert(start.clone());
                break;
            }
            if seen.insert(next) {
                todo.extend(graph.get(next).into_iter().flatten());
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files on an import circle: {circles:#?}"
    );
}

#[test]
fn only_delivery_emits_to_rooms_the_rest_to_the_socket_at_hand() {
    // deliver.rs: every event to a room (and offers); connect.rs: `hello`; expiry.rs: the expiry
    // notices; recovery/gate.rs: a kept entry, to the socket whose gate lets it through.
    let allowed = [
        "realtime/deliver.rs",
        "realtime/connect.rs",
        "realtime/expiry.rs",
        "recovery/gate.rs",
    ];
    let emitting: Vec<String> = sources()
        .into_iter()
        .filter(|(_, code)| code.contains(".emit(") || code.contains(".emit_with_ack"))
        .map(|(file, _)| file)
        .filter(|file| !allowed.contains(&file.as_str()))
        .collect();
    assert!(
        emitting.is_empty(),
        "raw emits outside delivery (send through realtime::deliver::send): {emitting:?}"
    );
}

#[test]
fn the_checks_see_the_imports_they_police() {
    // Guards the parser above: a known import is found, so an empty result means no import.
    let graph = imports(&sources());
    assert!(graph["realtime/connect.rs"].contains("realtime/services.rs"));
    assert!(graph["realtime/deliver.rs"].contains("recovery/log.rs"));
    assert!(graph["state/redis/mod.rs"].contains("state/script.rs"));
    assert!(graph["app/backend.rs"].contains("realtime/server.rs"));
}

#[test]
fn the_contract_pages_are_copies_of_the_reference_folder() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let reference = repo.join("../shared");
    if !reference.join("spec").is_dir() {
        // A clone without the team's reference folder beside it: nothing to compare with.
        return;
    }
    let mut compared = 0;
    for entry in fs::read_dir(reference.join("spec")).expect("the reference folder") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().expect("a file name").to_owned();
        let copy = repo.join("docs/spec").join(&name);
        let same = fs::read(&copy).ok() == Some(fs::read(&path).expect("a reference page"));
        assert!(
            same,
            "docs/spec/{name:?} differs from ../shared/spec (copy it in)"
        );
        compared += 1;
    }
    let guide = "seed/connection-guide.txt";
    assert_eq!(
        fs::read(repo.join("docs/spec/connection-guide.txt")).ok(),
        fs::read(reference.join(guide)).ok(),
        "docs/spec/connection-guide.txt differs from ../shared/{guide}"
    );
    assert!(compared > 0, "no contract page compared");
}

#[test]
fn the_docs_the_code_cites_are_in_the_repo() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = fs::read_to_string(&path).expect("a source file");
            for (at, _) in text.match_indices("docs/") {
                let cited: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
                    .collect();
                let cited = cited.trim_end_matches('.');
                if cited.ends_with(".md") && !repo.join(cited).is_file() {
                    missing.push(format!("{}: {cited}", path.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cited docs that do not exist: {missing:#?}"
    );
}
