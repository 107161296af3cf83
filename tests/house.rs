//! The house's shape, checked: no import cycle among the source files of either crate (the
//! library rooted at `src/lib.rs`, the binary at `src/main.rs`), and no relative link of the
//! README and docs/ that leads nowhere (the docs are split by reader and link across files).
//!
//! Why a test of our own: the core is layered (records ← projector ← decider ← writer, domain
//! at the bottom, the scrape above the ledger), and a cycle is how such layers erode, one
//! convenient import at a time. The test parses every file with `syn`, follows `mod` declarations
//! from the crate root, and resolves each path that names a module of the crate (`crate::…`,
//! `super::…`, `self::…`, in `use` trees and in code alike) to the file that defines it. A file
//! importing another is an arrow; any cycle of arrows fails the test with the files and the names
//! that tie them.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// One file module: its path from the crate root and its source file.
#[derive(Debug)]
struct FileModule {
    path: Vec<String>,
    file: PathBuf,
}

/// Every file module of the crate rooted at `root`, by following `mod name;` declarations (a file
/// `name.rs` or `name/mod.rs` next to the declaring file's directory).
fn file_modules(root: &Path) -> Vec<FileModule> {
    let mut out = Vec::new();
    let mut todo = vec![(Vec::<String>::new(), root.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // A crate root and `mod.rs` declare children in their own directory; `a.rs` in `a/`.
        let is_dir_owner = path.is_empty() || file.file_name().is_some_and(|n| n == "mod.rs");
        let dir =
            if is_dir_owner { file.parent().expect("a directory").to_path_buf() } else { file.with_extension("") };
        let file_dir = file.parent().expect("a directory").to_path_buf();
        collect_mods(&syntax.items, &path, &dir, &file_dir, &mut todo);
        out.push(FileModule { path, file });
    }
    out
}

/// `mod name;` declarations among `items` (also inside inline modules, whose files sit in a
/// directory named after them). A `#[path]` is read relative to the declaring file's directory,
/// as rustc reads the one this crate has (a test module sharing `tests/support/tools.rs`).
fn collect_mods(
    items: &[syn::Item],
    path: &[String],
    dir: &Path,
    file_dir: &Path,
    todo: &mut Vec<(Vec<String>, PathBuf)>,
) {
    for item in items {
        let syn::Item::Mod(m) = item else { continue };
        if is_cfg_test(&m.attrs) {
            continue;
        }
        let name = m.ident.to_string();
        let mut child = path.to_vec();
        child.push(name.clone());
        match &m.content {
            Some((_, inner)) => collect_mods(inner, &child, &dir.join(&name), file_dir, todo),
            None => {
                let explicit = m.attrs.iter().find_map(|a| {
                    let syn::Meta::NameValue(nv) = &a.meta else { return None };
                    if !nv.path.is_ident("path") {
                        return None;
                    }
                    let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value else { return None };
                    Some(file_dir.join(s.value()))
                });
                let file = explicit.unwrap_or_else(|| {
                    let flat = dir.join(format!("{name}.rs"));
                    if flat.exists() { flat } else { dir.join(&name).join("mod.rs") }
                });
                assert!(file.exists(), "mod {} declared in {}: no file {}", name, dir.display(), file.display());
                todo.push((child, file));
            }
        }
    }
}

/// The module paths one file names, with the names it takes (for the failure message).
struct Names<'a> {
    /// The module the visitor stands in (the file's, plus inline modules entered).
    here: Vec<String>,
    modules: &'a BTreeSet<Vec<String>>,
    found: BTreeMap<Vec<String>, BTreeSet<String>>,
}

impl Names<'_> {
    /// Records a path of segments as written at `here`, if it names a module of the crate.
    fn record(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else { return };
        let mut absolute: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.here.clone(),
            "super" => {
                let mut base = self.here.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                return self.resolve(base);
            }
            _ => return,
        };
        absolute.extend(segments[1..].iter().cloned());
        self.resolve(absolute);
    }

    /// The deepest file module that `absolute` lies in, with the name taken from it.
    fn resolve(&mut self, absolute: Vec<String>) {
        for len in (0..=absolute.len()).rev() {
            if self.modules.contains(&absolute[..len]) {
                let name = absolute.get(len).cloned().unwrap_or_else(|| "self".to_owned());
                self.found.entry(absolute[..len].to_vec()).or_default().insert(name);
                return;
            }
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.leaf(prefix, n.ident.to_string()),
            syn::UseTree::Rename(r) => self.leaf(prefix, r.ident.to_string()),
            syn::UseTree::Glob(_) => {
                let whole = prefix.clone();
                self.record(&whole);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn leaf(&mut self, prefix: &[String], name: String) {
        let mut whole = prefix.to_vec();
        if name != "self" {
            whole.push(name);
        }
        self.record(&whole);
    }
}

impl<'ast> Visit<'ast> for Names<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // Only inline modules are walked here; a file module is a file of its own. A test module
        // (`#[cfg(test)]`) is not part of the built crate's shape: a test may reach across floors.
        if is_cfg_test(&m.attrs) {
            return;
        }
        if let Some((_, items)) = &m.content {
            self.here.push(m.ident.to_string());
            for item in items {
                self.visit_item(item);
            }
            self.here.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.record(&segments);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside macro calls (`format!`, `assert!`) are tokens; read those that parse as
        // expressions or comma-separated expressions, as code.
        type Exprs = syn::punctuated::Punctuated<syn::Expr, syn::Token![,]>;
        if let Ok(exprs) = m.parse_body_with(Exprs::parse_terminated) {
            for e in &exprs {
                self.visit_expr(e);
            }
        }
        syn::visit::visit_macro(self, m);
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.parse_args::<syn::Meta>().is_ok_and(|meta| meta.path().is_ident("test")))
}

/// Arrows between the files of one crate: file → (file it imports → the names it takes).
fn arrows(root: &Path) -> BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>> {
    let files = file_modules(root);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.path.clone()).collect();
    let file_of: BTreeMap<&Vec<String>, &PathBuf> = files.iter().map(|f| (&f.path, &f.file)).collect();
    let mut out = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(&f.file).unwrap();
        let syntax = syn::parse_file(&text).unwrap();
        let mut names = Names { here: f.path.clone(), modules: &modules, found: BTreeMap::new() };
        names.visit_file(&syntax);
        let targets: BTreeMap<PathBuf, BTreeSet<String>> = names
            .found
            .into_iter()
            .map(|(module, names)| (file_of[&module].clone(), names))
            .filter(|(file, _)| *file != f.file)
            .collect();
        out.insert(f.file.clone(), targets);
    }
    out
}

/// The cycles of a graph: every strongly connected component of more than one file (Tarjan).
fn cycles(graph: &BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>>) -> Vec<Vec<PathBuf>> {
    struct State<'g> {
        graph: &'g BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>>,
        index: BTreeMap<&'g PathBuf, usize>,
        low: BTreeMap<&'g PathBuf, usize>,
        stack: Vec<&'g PathBuf>,
        on_stack: BTreeSet<&'g PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn connect<'g>(s: &mut State<'g>, v: &'g PathBuf) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|t| t.keys()) {
            if !s.index.contains_key(w) {
                connect(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            connect(&mut s, v);
        }
    }
    s.out
}

fn describe(graph: &BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>>, cycles: &[Vec<PathBuf>]) -> String {
    let mut out = String::new();
    for (i, files) in cycles.iter().enumerate() {
        out.push_str(&format!("cycle {}: {} files\n", i + 1, files.len()));
        for a in files {
            for (b, names) in graph[a].iter().filter(|(b, _)| files.contains(b)) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                out.push_str(&format!("  {} -> {}: {}\n", a.display(), b.display(), names.join(", ")));
            }
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_source_file_of_the_library_or_the_binary_imports_one_that_imports_it_back() {
    for root in ["lib.rs", "main.rs"] {
        let graph = arrows(&src().join(root));
        assert!(graph.len() > 1 || root == "main.rs", "the walk from {root} found {} files", graph.len());
        let found = cycles(&graph);
        assert!(found.is_empty(), "import cycles in the crate rooted at src/{root}:\n{}", describe(&graph, &found));
    }
}

#[test]
fn the_check_sees_a_cycle_through_use_trees_super_paths_and_code() {
    // A crate of three files where a -> b (a use tree), b -> c (a path in code) and c -> a
    // (through `super::`): one cycle of three; d imports a and is in none, nor in one with e
    // through their test modules (not part of the built crate).
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\nmod e;\n");
    write("a.rs", "use crate::b::{Thing, other::{self}};\npub fn f() {}\n");
    write("b.rs", "pub struct Thing;\npub mod other {}\npub fn g() { crate::c::h(); }\n");
    write("c.rs", "pub fn h() { assert!(super::a::f() == ()); }\n");
    write("d.rs", "use super::a;\n#[cfg(test)]\nmod tests { use crate::e::*; }\n");
    write("e.rs", "#[cfg(test)]\nmod tests { use crate::d::*; }\n");
    let graph = arrows(&dir.path().join("lib.rs"));
    let found = cycles(&graph);
    let names: Vec<Vec<String>> = found
        .iter()
        .map(|c| c.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect())
        .collect();
    assert_eq!(names, [["a.rs", "b.rs", "c.rs"]], "{}", describe(&graph, &found));
    assert!(graph[&dir.path().join("d.rs")].contains_key(&dir.path().join("a.rs")));
}

/// A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor_of(line));
        }
    }
    out
}

#[test]
fn every_relative_link_of_the_readme_and_the_docs_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("bench/README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // `](target)`: the Markdown links; absolute URLs are not ours to check.
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.starts_with("http") || target.contains(' ') {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            if !linked.exists() {
                broken.push(format!("{}: {target} (no such file)", file.display()));
                continue;
            }
            let is_md = linked.extension().is_some_and(|e| e == "md");
            if !anchor.is_empty() && is_md && !anchors(&std::fs::read_to_string(&linked).unwrap()).contains(anchor) {
                broken.push(format!("{}: {target} (no such heading)", file.display()));
            }
        }
    }
    assert!(files.len() >= 7, "the README, bench/README.md and docs/: {files:?}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The table of reasons as `docs/errors.md` holds it between its markers.
fn reasons_table() -> String {
    let mut out = String::from("| code | reason | when |\n|---|---|---|\n");
    for reason in ipledger::domain::Reason::ALL {
        out.push_str(&format!("| `{}` | `{}` | {} |\n", reason.code(), reason.as_str(), reason.when_line()));
    }
    out
}

#[test]
fn the_error_table_of_the_docs_is_the_reason_enum() {
    const BEGIN: &str = "<!-- reasons: generated from src/domain/reason.rs; tests/house.rs checks it, IPLEDGER_WRITE_DOCS=1 rewrites it -->\n";
    const END: &str = "<!-- reasons end -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/errors.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(BEGIN).expect("the begin marker") + BEGIN.len();
    let end = text.find(END).expect("the end marker");
    let table = reasons_table();
    if std::env::var("IPLEDGER_WRITE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, format!("{}{table}{}", &text[..start], &text[end..])).unwrap();
        return;
    }
    assert_eq!(
        &text[start..end],
        table,
        "docs/errors.md's table differs from src/domain/reason.rs: IPLEDGER_WRITE_DOCS=1 cargo test --test house rewrites it"
    );
}
