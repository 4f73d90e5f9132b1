//! No import circles between the director's modules.
//!
//! Reads `src/lib.rs` for the module list and the names re-exported at the
//! root, then every module's code (comments and its `#[cfg(test)] mod
//! tests` left out) for `crate::NAME` paths, `use crate::{...}` groups
//! included, and fails naming every circle it finds (Tarjan's strongly
//! connected components). A module that uses a name re-exported at the
//! root depends on the module that defines it.
//!
//! Re-check with `cargo test -p sticky-director --test module_graph --
//! --nocapture` (it prints the graph).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The code of a file without comments and without its unit tests.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segment of every item in a `use` group body (`a, b::c,
/// d::{e, f}`), at the group's top level.
fn group_heads(body: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if depth == 0 && at_item_start && is_ident(c) => {
                let rest = &body[i..];
                let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
                heads.push(rest[..end].to_owned());
                at_item_start = false;
                for _ in 1..end {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    heads
}

/// Every name that follows `crate::` in `code`.
fn crate_names(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before_ok = i == 0 || !rest[..i].ends_with(is_ident);
        rest = &rest[i + "crate::".len()..];
        if !before_ok {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(j, _)| j);
            names.extend(group_heads(&group[..end]));
        } else {
            let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            if end > 0 {
                names.insert(rest[..end].to_owned());
            }
        }
    }
    names
}

/// Modules declared in `lib.rs`, and the module behind each name it
/// re-exports.
fn crate_root(lib: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let code = code_of(lib);
    let mut modules = BTreeSet::new();
    let mut exports = BTreeMap::new();
    for stmt in code.split(';') {
        let stmt = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
        let stmt = stmt
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if let Some(m) = stmt.strip_prefix("mod ") {
            modules.insert(m.trim().to_owned());
        } else if let Some(path) = stmt.strip_prefix("use ") {
            let path = path.trim().trim_start_matches("crate::");
            let Some((module, items)) = path.split_once("::") else {
                continue;
            };
            let items = items.trim().trim_start_matches('{').trim_end_matches('}');
            for item in items.split(',') {
                let item = item.trim();
                let name = item.rsplit(" as ").next().unwrap_or(item).trim();
                let name = name.rsplit("::").next().unwrap_or(name);
                if !name.is_empty() {
                    exports.insert(name.to_owned(), module.to_owned());
                }
            }
        }
    }
    (modules, exports)
}

/// Strongly connected components with more than one module.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

#[test]
fn no_import_circles_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let (modules, exports) = crate_root(&lib);
    assert!(modules.len() > 5, "no modules found in lib.rs: {modules:?}");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for module in &modules {
        let path = src.join(format!("{module}.rs"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let deps = graph.entry(module.clone()).or_default();
        for name in crate_names(&code_of(&text)) {
            let target = if modules.contains(&name) {
                name
            } else if let Some(m) = exports.get(&name) {
                m.clone()
            } else {
                panic!("{module}.rs uses crate::{name}, which is neither a module nor a re-export");
            };
            if &target != module {
                deps.insert(target);
            }
        }
    }
    for (module, deps) in &graph {
        println!(
            "{module} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let found = circles(&graph);
    assert!(
        found.is_empty(),
        "import circles between modules (each line: modules that reach each other):\n{}",
        found
            .iter()
            .map(|c| c.join(" <-> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_parser_sees_every_kind_of_path() {
    let code = code_of(
        "use crate::a::B;\nuse crate::{c, d::{E, F}, g::H as I};\n// crate::comment\nfn f() { crate::j::k(); }\n#[cfg(test)]\nmod tests { use crate::z; }\n",
    );
    let names: Vec<String> = crate_names(&code).into_iter().collect();
    assert_eq!(names, ["a", "c", "d", "g", "j"]);
}
