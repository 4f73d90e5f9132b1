//! No import circles between the modules of a crate, checked from the
//! source with std only.
//!
//! [`ModuleGraph::read`] starts at the crate root (`lib.rs`, else
//! `main.rs`), follows every `mod NAME;` into `NAME.rs` or `NAME/mod.rs`
//! (and from there into the submodule directory, `a/b.rs`, `a/b/mod.rs`),
//! and reads each module's code with comments, string and char literals
//! and `#[cfg(test)]` items (the unit tests) left out. A module depends on
//! every module it names by a path: `crate::a::b::Item`, `super::Item`,
//! `self::child::Item`, a bare `child::Item`, `use` groups included. A
//! name brought in by a `use` (a re-export such as `pub use a::Item` in
//! `lib.rs`) stands for the module it came from, so a module that uses a
//! name re-exported at the root depends on the module that defines it.
//! The crate root is the node `crate`; an item defined in the root itself
//! makes the module that uses it depend on `crate`.
//!
//! Inline modules (`mod a { ... }`) count as part of the file they are
//! written in. `#[path]` attributes are not followed.
//!
//! [`assert_no_cycles`] prints the graph (shown with `--nocapture`) and
//! fails naming every circle (each strongly connected component of two or
//! more modules). Each crate runs it from its `tests/module_graph.rs`:
//!
//! ```text
//! cargo test -p sticky-director --test module_graph -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The name of the crate root's node.
const ROOT: &str = "crate";

/// Which modules of one crate name which: module path (`a::b`, or `crate`
/// for the root) to the modules it depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleGraph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

/// Reads the crate under `src_dir` (its `lib.rs`, else its `main.rs`),
/// prints its module graph and panics naming every import circle (or if
/// the root declares no module at all, which would make the check empty).
pub fn assert_no_cycles(src_dir: impl AsRef<Path>) {
    let src = src_dir.as_ref();
    let graph = ModuleGraph::read(src);
    println!("{graph}");
    assert!(
        graph.edges.len() > 1,
        "no module declared under {}: nothing to check",
        src.display()
    );
    let found = graph.cycles();
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

impl ModuleGraph {
    /// Reads the crate whose root is `src_dir/lib.rs`, or `src_dir/main.rs`
    /// if it has no `lib.rs`.
    pub fn read(src_dir: impl AsRef<Path>) -> Self {
        let src = src_dir.as_ref();
        let lib = src.join("lib.rs");
        let root = if lib.exists() {
            lib
        } else {
            src.join("main.rs")
        };
        Self::from_root(&root)
    }

    /// Reads the crate whose root file is `root` (`lib.rs`, `main.rs`, or
    /// another binary's root).
    pub fn from_root(root: &Path) -> Self {
        let mut modules = BTreeMap::new();
        load(root, Vec::new(), &mut modules);
        Self::from_modules(&modules)
    }

    /// The graph of modules given as (module path, source text) pairs, the
    /// root as `""`. For checking the parser without files.
    pub fn from_sources<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut modules = BTreeMap::new();
        for (path, text) in sources {
            let path: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            modules.insert(path, Module::parse(text));
        }
        // A module's children are the modules one level below it.
        let paths: Vec<Vec<String>> = modules.keys().cloned().collect();
        for path in paths {
            if let Some((last, parent)) = path.split_last() {
                if let Some(m) = modules.get_mut(parent) {
                    m.children.insert(last.clone());
                }
            }
        }
        Self::from_modules(&modules)
    }

    fn from_modules(modules: &BTreeMap<Vec<String>, Module>) -> Self {
        let mut edges = BTreeMap::new();
        for (path, module) in modules {
            let mut deps = BTreeSet::new();
            for (base, segs) in &module.paths {
                let base = match base {
                    Base::Crate => Vec::new(),
                    Base::Here => path.clone(),
                    Base::Up(n) => path[..path.len().saturating_sub(*n)].to_vec(),
                };
                let target = resolve(modules, base, segs, 0);
                if &target != path {
                    deps.insert(name_of(&target));
                }
            }
            edges.insert(name_of(path), deps);
        }
        Self { edges }
    }

    /// Every module, the root included.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.edges.keys().map(String::as_str)
    }

    /// The modules `module` depends on.
    pub fn dependencies(&self, module: &str) -> impl Iterator<Item = &str> {
        self.edges
            .get(module)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The circles: each strongly connected component of two or more
    /// modules, sorted (Tarjan's algorithm).
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut t = Tarjan {
            graph: &self.edges,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for v in self.edges.keys() {
            if !t.index.contains_key(v.as_str()) {
                t.visit(v);
            }
        }
        t.found.sort();
        t.found
    }
}

impl fmt::Display for ModuleGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (module, deps) in &self.edges {
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            writeln!(f, "{module} -> {}", deps.join(", "))?;
        }
        Ok(())
    }
}

fn name_of(path: &[String]) -> String {
    if path.is_empty() {
        ROOT.to_owned()
    } else {
        path.join("::")
    }
}

/// Where a path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// `crate::`
    Crate,
    /// `self::`, or a bare child module's name.
    Here,
    /// `super::` as many times as given.
    Up(usize),
}

/// One module's file, as the graph needs it.
#[derive(Debug, Default)]
struct Module {
    /// Modules declared with `mod NAME;`.
    children: BTreeSet<String>,
    /// Names bound by `use` at the file's top level: name to (base, path).
    bindings: BTreeMap<String, (Base, Vec<String>)>,
    /// Every path into the crate the code names.
    paths: Vec<(Base, Vec<String>)>,
}

impl Module {
    fn parse(text: &str) -> Self {
        let code: Vec<char> = without_tests(&strip(text)).chars().collect();
        let children = declared_modules(&code);
        let mut paths = Vec::new();
        let mut bindings = BTreeMap::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < code.len() {
            let c = code[i];
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if !is_ident(c) || (i > 0 && (is_ident(code[i - 1]) || code[i - 1] == ':')) {
                i += 1;
                continue;
            }
            let (word, end) = ident_at(&code, i);
            if word == "use" && depth == 0 {
                let (tree, next) = parse_tree(&code, end);
                for (segs, alias) in tree {
                    if let Some((base, rest)) = split_base(&segs, &children) {
                        let name = alias
                            .or_else(|| segs.iter().rev().find(|s| s.as_str() != "self").cloned());
                        if let Some(name) = name {
                            bindings.insert(name, (base, rest.clone()));
                        }
                        paths.push((base, rest));
                    }
                }
                i = next.max(end);
                continue;
            }
            let after = skip_ws(&code, end);
            let is_path = code.get(after) == Some(&':') && code.get(after + 1) == Some(&':');
            if is_path
                && (word == "crate"
                    || word == "super"
                    || word == "self"
                    || children.contains(&word))
            {
                let (tree, next) = parse_tree(&code, i);
                for (segs, _) in tree {
                    if let Some(split) = split_base(&segs, &children) {
                        paths.push(split);
                    }
                }
                i = next.max(end);
                continue;
            }
            i = end;
        }
        Self {
            children,
            bindings,
            paths,
        }
    }
}

/// Splits a path into where it starts and the rest; `None` for paths that
/// leave the crate (`std::...`, other crates).
fn split_base(segs: &[String], children: &BTreeSet<String>) -> Option<(Base, Vec<String>)> {
    let first = segs.first()?;
    match first.as_str() {
        "crate" => Some((Base::Crate, segs[1..].to_vec())),
        "self" => Some((Base::Here, segs[1..].to_vec())),
        "super" => {
            let ups = segs.iter().take_while(|s| s.as_str() == "super").count();
            Some((Base::Up(ups), segs[ups..].to_vec()))
        }
        name if children.contains(name) => Some((Base::Here, segs.to_vec())),
        _ => None,
    }
}

/// The module a path names: as deep as its segments are modules, or the
/// module a `use` there brought the next segment from.
fn resolve(
    modules: &BTreeMap<Vec<String>, Module>,
    mut cur: Vec<String>,
    segs: &[String],
    hops: usize,
) -> Vec<String> {
    for (k, seg) in segs.iter().enumerate() {
        let Some(module) = modules.get(&cur) else {
            break;
        };
        if seg == "self" {
            continue;
        }
        if module.children.contains(seg) {
            cur.push(seg.clone());
            continue;
        }
        if let Some((base, path)) = module.bindings.get(seg) {
            if hops < 16 {
                let base = match base {
                    Base::Crate => Vec::new(),
                    Base::Here => cur.clone(),
                    Base::Up(n) => cur[..cur.len().saturating_sub(*n)].to_vec(),
                };
                let mut rest = path.clone();
                rest.extend(segs[k + 1..].iter().cloned());
                return resolve(modules, base, &rest, hops + 1);
            }
        }
        break;
    }
    cur
}

/// Reads the module at `file` (module path `path`) and its submodules.
fn load(file: &Path, path: Vec<String>, modules: &mut BTreeMap<Vec<String>, Module>) {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let module = Module::parse(&text);
    let dir = submodule_dir(file);
    let children = module.children.clone();
    modules.insert(path.clone(), module);
    for child in children {
        let flat = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let child_file = if flat.exists() {
            flat
        } else if nested.exists() {
            nested
        } else {
            panic!(
                "{}: `mod {child};` has neither {} nor {}",
                file.display(),
                flat.display(),
                nested.display()
            )
        };
        let mut child_path = path.clone();
        child_path.push(child);
        load(&child_file, child_path, modules);
    }
}

/// Where `file`'s submodules live: beside a root or `mod.rs`, else in the
/// directory named after the file.
fn submodule_dir(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("lib" | "main" | "mod") | None => dir,
        Some(stem) => dir.join(stem),
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn ident_at(code: &[char], start: usize) -> (String, usize) {
    let mut end = start;
    while end < code.len() && is_ident(code[end]) {
        end += 1;
    }
    (code[start..end].iter().collect(), end)
}

fn skip_ws(code: &[char], mut i: usize) -> usize {
    while i < code.len() && code[i].is_whitespace() {
        i += 1;
    }
    i
}

/// One path of a `use` tree or expression, and the name it is bound to
/// with `as`.
type Expansion = (Vec<String>, Option<String>);

/// The expansions of a path or `use` tree starting at `i`, each with its
/// `as` name, and where the tree ends.
fn parse_tree(code: &[char], i: usize) -> (Vec<Expansion>, usize) {
    let mut i = skip_ws(code, i);
    match code.get(i) {
        Some('{') => {
            let mut out = Vec::new();
            i += 1;
            loop {
                i = skip_ws(code, i);
                match code.get(i) {
                    None => break,
                    Some('}') => {
                        i += 1;
                        break;
                    }
                    Some(',') => i += 1,
                    Some(_) => {
                        let (sub, next) = parse_tree(code, i);
                        i = if next > i { next } else { i + 1 };
                        out.extend(sub);
                    }
                }
            }
            (out, i)
        }
        Some('*') => (vec![(Vec::new(), None)], i + 1),
        Some(&c) if is_ident(c) => {
            let (seg, end) = ident_at(code, i);
            let after = skip_ws(code, end);
            if code.get(after) == Some(&':') && code.get(after + 1) == Some(&':') {
                let (subs, next) = parse_tree(code, after + 2);
                if subs.is_empty() {
                    return (vec![(vec![seg], None)], next);
                }
                let subs = subs
                    .into_iter()
                    .map(|(mut segs, alias)| {
                        segs.insert(0, seg.clone());
                        (segs, alias)
                    })
                    .collect();
                return (subs, next);
            }
            let (word, as_end) = ident_at(code, after);
            if word == "as" {
                let name_at = skip_ws(code, as_end);
                let (alias, alias_end) = ident_at(code, name_at);
                if !alias.is_empty() {
                    // `as _` binds no name.
                    let alias = (alias != "_").then_some(alias);
                    return (vec![(vec![seg], alias)], alias_end);
                }
            }
            (vec![(vec![seg], None)], end)
        }
        _ => (Vec::new(), i),
    }
}

/// Names declared with `mod NAME;` (not inline `mod NAME { ... }`).
fn declared_modules(code: &[char]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < code.len() {
        if !is_ident(code[i]) || (i > 0 && is_ident(code[i - 1])) {
            i += 1;
            continue;
        }
        let (word, end) = ident_at(code, i);
        if word == "mod" {
            let name_at = skip_ws(code, end);
            let (name, name_end) = ident_at(code, name_at);
            let after = skip_ws(code, name_end);
            if !name.is_empty() && code.get(after) == Some(&';') {
                found.insert(name);
            }
        }
        i = end;
    }
    found
}

/// The code of `text` with comments removed and string and char literals
/// emptied (so braces and `//` inside them mislead nothing).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        match c[i] {
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            'r' if !prev_ident || raw_after_b(&c, i) => {
                let mut j = i + 1;
                while c.get(j) == Some(&'#') {
                    j += 1;
                }
                if c.get(j) == Some(&'"') {
                    let hashes = j - i - 1;
                    let mut k = j + 1;
                    loop {
                        if k >= c.len() {
                            break;
                        }
                        if c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#')) {
                            k += 1 + hashes;
                            break;
                        }
                        k += 1;
                    }
                    out.push_str("\"\"");
                    i = k;
                } else {
                    out.push('r');
                    i += 1;
                }
            }
            '"' => {
                let mut k = i + 1;
                while k < c.len() && c[k] != '"' {
                    if c[k] == '\\' {
                        k += 1;
                    }
                    k += 1;
                }
                out.push_str("\"\"");
                i = k + 1;
            }
            '\'' => {
                // A char literal ('x', '\n', '\u{..}'), else a lifetime.
                if c.get(i + 1) == Some(&'\\') {
                    // The escaped char is at i + 2; the closing quote after it.
                    let mut k = i + 3;
                    while k < c.len() && c[k] != '\'' {
                        k += 1;
                    }
                    out.push_str("' '");
                    i = k + 1;
                } else if c.get(i + 2) == Some(&'\'') {
                    out.push_str("' '");
                    i += 3;
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// `br"..."`: an `r` right after a `b` that starts a word.
fn raw_after_b(c: &[char], i: usize) -> bool {
    i >= 1 && c[i - 1] == 'b' && (i < 2 || !is_ident(c[i - 2]))
}

/// `code` without the items marked `#[cfg(test)]` (unit tests and their
/// helpers): each from its attribute to the `;` or the closing brace that
/// ends it.
fn without_tests(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (j, ch) in item.char_indices() {
            match ch {
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push('\n');
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(graph: &ModuleGraph, module: &str) -> Vec<String> {
        graph.dependencies(module).map(str::to_owned).collect()
    }

    #[test]
    fn the_parser_sees_every_kind_of_path() {
        let graph = ModuleGraph::from_sources([
            ("", "mod a; mod c; mod d; mod g; mod j; mod m; mod z;"),
            (
                "m",
                "use crate::a::B;\nuse crate::{c, d::{E, F}, g::H as I};\n// crate::z\n\
                 /* crate::z */ const S: &str = \"crate::z // {\"; const C: char = '{';\n\
                 fn f<'a>() { crate::j::k(); }\n#[cfg(test)]\nmod tests { use crate::z; }\n",
            ),
            ("a", ""),
            ("c", ""),
            ("d", ""),
            ("g", ""),
            ("j", ""),
            ("z", ""),
        ]);
        assert_eq!(deps(&graph, "m"), ["a", "c", "d", "g", "j"]);
    }

    #[test]
    fn submodules_super_self_and_re_exports_resolve_to_their_module() {
        let graph = ModuleGraph::from_sources([
            ("", "mod a; mod b; pub use a::inner::Thing;"),
            ("a", "pub(crate) mod inner; fn f() { inner::g(); }"),
            (
                "a::inner",
                "pub struct Thing; fn h() { super::super::b::x(); }",
            ),
            ("b", "use crate::Thing; fn x() { self::y(); }"),
        ]);
        assert_eq!(deps(&graph, "crate"), ["a::inner"]);
        assert_eq!(deps(&graph, "a"), ["a::inner"]);
        assert_eq!(deps(&graph, "a::inner"), ["b"]);
        assert_eq!(deps(&graph, "b"), ["a::inner"]);
        assert_eq!(
            graph.cycles(),
            [vec!["a::inner".to_owned(), "b".to_owned()]]
        );
    }

    #[test]
    fn test_only_items_and_other_crates_are_no_dependencies() {
        let graph = ModuleGraph::from_sources([
            ("", "mod a; mod b; #[cfg(test)] mod tests;"),
            (
                "a",
                "use std::io; use other::b::X; fn f() { io::stdout(); other::b::y(); }\n\
                 #[cfg(test)] use crate::b;\n#[cfg(test)]\nfn helper() { crate::b::z(); }",
            ),
            ("b", "pub fn z() {}"),
        ]);
        assert!(deps(&graph, "a").is_empty(), "{graph}");
        assert!(graph.cycles().is_empty());
    }

    #[test]
    fn every_circle_is_named() {
        let graph = ModuleGraph::from_sources([
            ("", "mod a; mod b; mod c; mod d; mod e;"),
            ("a", "use crate::b::X;"),
            ("b", "use crate::c::Y;"),
            ("c", "use crate::a::Z;"),
            ("d", "use crate::e::V;"),
            ("e", "fn f() { crate::d::w(); }"),
        ]);
        assert_eq!(
            graph.cycles(),
            [
                vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
                vec!["d".to_owned(), "e".to_owned()],
            ]
        );
    }
}
