//! The shape of `src/`, checked rather than eyed: no import cycle between top-level modules,
//! the stages (`source`, `sink`, `checkpoint`) never import one above them or `app`, no
//! function outside tests over 100 lines, no file over 700 lines.
//!
//! The source is read as text: comments, strings and character literals are blanked first,
//! then `crate::` paths (and `use crate::{...}` groups) name the modules each one imports.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const MAX_FUNCTION_LINES: usize = 100;
const MAX_FILE_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The text with comments, string and character literals replaced by spaces (newlines kept,
/// so line numbers stay).
fn blank(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_lines = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            loop {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep_lines(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"...", r#"..."#, ...
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &skipped in &chars[i..j] {
                out.push(keep_lines(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(keep_lines(chars[i]));
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{7f}'), or a lifetime ('a) left as it is.
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The top-level module a file belongs to (`source` for `src/source/decode.rs`).
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix(src()).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The top-level modules named by `crate::` paths in `code`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // use crate::{a, b::{c, d}, e::f};
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            found.insert(first_segment(&item));
        } else {
            found.insert(first_segment(after));
        }
        rest = after;
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Top-level module to the top-level modules it imports (`lib` and `main` left out: they
/// name every module).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&file);
        if module == "lib" || module == "main" {
            continue;
        }
        let code = blank(&std::fs::read_to_string(&file).unwrap());
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imports(&code).into_iter().filter(|m| *m != module));
    }
    graph
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_import_reader_sees_groups_and_ignores_comments_and_strings() {
    let code = blank(
        "use crate::{a, b::{c, d}, e::f};\n// crate::g\nlet s = \"crate::h\";\nlet c = '{';\n\
         let r = r#\"crate::i\"#;\nx = crate::j::k();\n",
    );
    let expected: BTreeSet<String> = ["a", "b", "e", "j"].map(String::from).into();
    assert_eq!(imports(&code), expected);
    let cyclic: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), ["b".to_owned()].into()),
        ("b".to_owned(), ["c".to_owned()].into()),
        ("c".to_owned(), ["a".to_owned()].into()),
    ]
    .into();
    assert_eq!(find_cycle(&cyclic).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = import_graph();
    assert!(graph.contains_key("source") && graph.contains_key("sink"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level modules: {}\n(graph: {graph:#?})",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_stages_import_only_what_lies_below_them() {
    let graph = import_graph();
    let forbidden = [
        (
            "source",
            &["app", "sink", "checkpoint", "check", "tail"][..],
        ),
        ("sink", &["app", "source", "check", "tail"][..]),
        (
            "checkpoint",
            &["app", "source", "sink", "check", "tail"][..],
        ),
        (
            "stream",
            &["app", "source", "sink", "checkpoint", "metrics"][..],
        ),
        (
            "event",
            &["app", "source", "sink", "checkpoint", "stream"][..],
        ),
    ];
    let mut wrong = Vec::new();
    for (stage, above) in forbidden {
        for module in &graph[stage] {
            if above.contains(&module.as_str()) {
                wrong.push(format!("{stage} imports {module}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Each function outside tests: its name, first line and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    let mut test_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    let mut cfg_test = false;
    // Inside (...) or [...]: a `;` there (`[u8; 4]`) ends nothing.
    let mut brackets = 0usize;
    for (number, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            cfg_test = true;
        }
        let words: Vec<&str> = trimmed
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let is_fn = words
            .iter()
            .position(|w| *w == "fn")
            .filter(|&at| {
                words[..at]
                    .iter()
                    .all(|w| ["pub", "crate", "super", "async", "const", "unsafe"].contains(w))
            })
            .and_then(|at| words.get(at + 1));
        if let (Some(name), None) = (is_fn, test_depth) {
            open.push((name.to_string(), number + 1, depth));
        }
        for c in line.chars() {
            match c {
                '{' => {
                    if cfg_test && test_depth.is_none() {
                        test_depth = Some(depth);
                        cfg_test = false;
                    }
                    depth += 1;
                }
                '}' => {
                    depth -= 1;
                    if test_depth == Some(depth) {
                        test_depth = None;
                    }
                    if let Some((_, _, at)) = open.last() {
                        if *at == depth {
                            let (name, first, _) = open.pop().unwrap();
                            found.push((name, first, number + 2 - first));
                        }
                    }
                }
                '(' | '[' => brackets += 1,
                ')' | ']' => brackets = brackets.saturating_sub(1),
                ';' if brackets == 0 && open.last().is_some_and(|(_, _, at)| *at == depth) => {
                    // A declaration without a body (a trait method).
                    open.pop();
                }
                _ => {}
            }
        }
        if cfg_test && trimmed.ends_with(';') && trimmed.starts_with("mod ") {
            cfg_test = false;
        }
    }
    found
}

#[test]
fn the_function_reader_measures_bodies_and_skips_tests() {
    let code = blank(
        "fn a() -> [u8; 1] {\n    let x = '}';\n}\ntrait T {\n    fn b(&self);\n}\n\
         #[cfg(test)]\nmod tests {\n    fn c() {\n    }\n}\npub(crate) async fn d(\n    x: u8,\n) {\n}\n",
    );
    let found = functions(&code);
    assert_eq!(
        found,
        [("a".to_owned(), 1, 3), ("d".to_owned(), 12, 4)],
        "{code}"
    );
}

#[test]
fn no_function_outside_tests_is_over_100_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let code = blank(&std::fs::read_to_string(&file).unwrap());
        for (name, line, length) in functions(&code) {
            if length > MAX_FUNCTION_LINES {
                long.push(format!("{}:{line} {name}: {length} lines", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn no_file_in_src_is_over_700_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > MAX_FILE_LINES).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines:\n{}",
        long.join("\n")
    );
}
