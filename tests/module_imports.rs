//! The module structure of the library crates, read from their sources: no two modules
//! import each other (directly or through others), and the udf crate's three parts
//! import only downwards (`pyfunc` <- `python` <- `plan`, README "Layout").
//!
//! A module's imports are the `crate::...` paths in its code (the crates use `crate::`
//! paths, never `super::` across files); a name re-exported by a parent module
//! (`pub use child::Name`) counts as an import of the child that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 3] = ["udf", "engine", "flight-server"];

/// One library crate: its modules, what each re-exports, and what each imports.
struct Crate {
    /// Module path ("" for the crate root, "python::model") to its source.
    sources: BTreeMap<String, String>,
}

impl Crate {
    fn read(name: &str) -> Self {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(name)
            .join("src");
        let mut sources = BTreeMap::new();
        for file in rust_files(&src) {
            let relative = file.strip_prefix(&src).expect("under src");
            let module = relative.with_extension("");
            let module = module
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("::");
            let module = match module.as_str() {
                "lib" => String::new(),
                "main" => continue, // the binary: a crate of its own
                _ => module,
            };
            let text = std::fs::read_to_string(&file).expect("readable source");
            sources.insert(module, code_only(&text));
        }
        Self { sources }
    }

    /// The module defining `path` (`python::Scorer` -> `python::model`), or `None` for
    /// something that is not a module of this crate.
    fn resolve(&self, path: &[String]) -> Option<String> {
        let (mut module, mut rest) = (String::new(), path);
        while let Some((first, tail)) = rest.split_first() {
            let child = join(&module, first);
            if !self.sources.contains_key(&child) {
                break;
            }
            (module, rest) = (child, tail);
        }
        let Some(name) = rest.first() else {
            return Some(module);
        };
        match self.reexport_source(&module, name) {
            // Only a re-export from a module below this one leads further.
            Some(child) if child.len() > path.len() - rest.len() + 1 => self.resolve(&child),
            _ => Some(module),
        }
    }

    /// Where `module` takes `name` from when it re-exports it (`pub use child::{name}`),
    /// as a path from the crate root.
    fn reexport_source(&self, module: &str, name: &str) -> Option<Vec<String>> {
        let source = &self.sources[module];
        let mut at = 0;
        while let Some(found) = source[at..].find("pub use ") {
            let start = at + found + "pub use ".len();
            let end = start + source[start..].find(';')?;
            at = end;
            for path in use_tree(&source[start..end]) {
                if path.last().map(String::as_str) == Some(name) {
                    let mut full: Vec<String> = if module.is_empty() {
                        vec![]
                    } else {
                        module.split("::").map(str::to_owned).collect()
                    };
                    let path = match path.first().map(String::as_str) {
                        Some("crate") => path[1..].to_vec(),
                        _ => {
                            full.extend(path);
                            full
                        }
                    };
                    return Some(path);
                }
            }
        }
        None
    }

    /// Each module's imports of other modules of the crate.
    fn imports(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.sources
            .iter()
            .map(|(module, source)| {
                let targets = crate_paths(source)
                    .iter()
                    .filter_map(|p| self.resolve(&p[1..])) // after `crate`
                    .filter(|t| t != module && !t.is_empty())
                    .collect();
                (module.clone(), targets)
            })
            .collect()
    }
}

fn join(module: &str, name: &str) -> String {
    if module.is_empty() {
        name.to_owned()
    } else {
        format!("{module}::{name}")
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The source without comment lines (doc links are not imports).
fn code_only(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::...` path in `source`, use trees expanded (`crate::a::{b, c::D}`).
fn crate_paths(source: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut at = 0;
    while let Some(found) = source[at..].find("crate::") {
        let start = at + found;
        at = start + "crate::".len();
        let preceded_by_ident = source[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded_by_ident {
            continue; // e.g. `mlfusion_crate::`
        }
        let tree = &source[start..];
        let end = tree_end(tree);
        paths.extend(use_tree(&tree[..end]));
    }
    paths
}

/// Where the path or use tree at the start of `text` ends.
fn tree_end(text: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => return i,
            _ => {}
        }
    }
    text.len()
}

/// The paths of a use tree: `a::{b, c::{D, E}}` -> a::b, a::c::D, a::c::E (the crates
/// rename no imports of their own modules: `as` is not read).
fn use_tree(text: &str) -> Vec<Vec<String>> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = text.find('{') else {
        let path: Vec<String> = text
            .split("::")
            .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
            .map(str::to_owned)
            .collect();
        return if path.is_empty() { vec![] } else { vec![path] };
    };
    let prefix: Vec<String> = text[..open]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let inner = &text[open + 1..text.rfind('}').unwrap_or(text.len())];
    let mut items = Vec::new();
    let (mut depth, mut item_start) = (0usize, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[item_start..i]);
                item_start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[item_start..]);
    let mut paths = Vec::new();
    for item in items.into_iter().filter(|i| !i.is_empty()) {
        for tail in use_tree(item) {
            paths.push(prefix.iter().cloned().chain(tail).collect());
        }
        if item == "self" {
            paths.push(prefix.clone());
        }
    }
    paths
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
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
fn no_module_imports_another_that_imports_it_back() {
    for name in CRATES {
        let imports = Crate::read(name).imports();
        let edges: usize = imports.values().map(BTreeSet::len).sum();
        assert!(
            imports.len() > 3 && edges >= 3,
            "{name}: too few modules or imports found: {imports:?}"
        );
        if let Some(cycle) = find_cycle(&imports) {
            panic!("{name}: modules import each other: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_udf_parts_import_only_downwards() {
    let udf = Crate::read("udf");
    let part = |module: &str| module.split("::").next().unwrap_or_default().to_owned();
    let rank = |part: &str| match part {
        "pyfunc" => Some(0),
        "python" => Some(1),
        "plan" => Some(2),
        _ => None,
    };
    let mut checked = 0;
    for (module, targets) in udf.imports() {
        let Some(from) = rank(&part(&module)) else {
            continue;
        };
        for target in targets {
            checked += 1;
            if let Some(to) = rank(&part(&target)) {
                assert!(to <= from, "{module} imports {target}, a part above it");
            }
        }
    }
    assert!(checked > 10, "too few imports found: {checked}");
    for (module, source) in &udf.sources {
        match part(module).as_str() {
            "pyfunc" => {
                for dependency in ["pyo3::", "datafusion::"] {
                    assert!(
                        !source.contains(dependency),
                        "{module} (the pyfunc format) uses {dependency}"
                    );
                }
            }
            "python" => {
                let planner = source
                    .match_indices("datafusion::")
                    .any(|(i, _)| !source[i..].starts_with("datafusion::physical_plan::metrics"));
                assert!(
                    !planner,
                    "{module} (the Python runtime) uses DataFusion beyond its metric counters"
                );
            }
            _ => {}
        }
    }
}

#[test]
fn use_trees_and_reexports_resolve() {
    let paths = crate_paths("use crate::a::{b, c::{D, E}};\nlet x = crate::f::g(1);");
    let shown: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        shown,
        [
            "crate::a::b",
            "crate::a::c::D",
            "crate::a::c::E",
            "crate::f::g"
        ]
    );
    let udf = Crate::read("udf");
    let path = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        udf.resolve(&path("python::Scorer")).as_deref(),
        Some("python::model")
    );
    assert_eq!(udf.resolve(&path("Error")).as_deref(), Some("error"));
    assert_eq!(
        udf.resolve(&path("pyfunc::signature::Schema")).as_deref(),
        Some("pyfunc::signature")
    );
}
