//! The repository stands alone: no file refers to the team's reference folder beside the
//! checkout (a user's clone has none), and the data the tests read is inside it.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name == ".git" || name == ".broker" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_file_refers_outside_the_repository() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = Vec::new();
    files(&root, &mut all);
    // Built here so that this file does not match itself.
    let needles = [
        format!("../{}", "shared"),
        format!("{}/reference/", "shared"),
    ];
    let offenders: Vec<String> = all
        .iter()
        .filter_map(|path| {
            let text = std::fs::read(path).ok()?;
            let text = String::from_utf8_lossy(&text);
            needles.iter().any(|n| text.contains(n.as_str())).then(|| {
                path.strip_prefix(&root)
                    .unwrap_or(path)
                    .display()
                    .to_string()
            })
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "files referring outside the repository: {offenders:?}"
    );
    assert!(root.join("docs/design.md").exists());
    assert!(root.join("tests/data/rfc4475/manifest.tsv").exists());
}
