//! Embeds the model zoo (`models/*.toml`) into the binary, so `funmatch models` and zoo names
//! work wherever the binary is installed.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "toml"));
    entries.sort();

    let mut code = String::from("pub static ZOO_FILES: &[(&str, &str)] = &[\n");
    for path in entries {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().unwrap().to_string_lossy();
        writeln!(code, "    ({name:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("zoo_files.rs");
    std::fs::write(out, code).unwrap();
}
