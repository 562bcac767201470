//! Class tables: the wnid order that gives model class indices, class names, class subsets.

use std::collections::HashMap;
use std::path::Path;

use crate::descriptor::SetDescriptor;
use crate::EvalError;

/// The classes of a set: wnids in model-index order, their names, and the reverse map.
#[derive(Clone, Debug)]
pub struct ClassTable {
    /// wnid of class `i` at position `i`.
    pub wnids: Vec<String>,
    /// Human names in the same order (the wnid when no name is known).
    pub names: Vec<String>,
    /// wnid → class index.
    pub index: HashMap<String, u32>,
}

impl ClassTable {
    /// Reads the descriptor's `classes` (and `class_names`, when given) files.
    pub fn load(desc: &SetDescriptor) -> Result<ClassTable, EvalError> {
        let Some(classes) = &desc.classes else {
            return Err(EvalError::Descriptor {
                path: desc.name.clone(),
                message: "this layout needs a `classes` file".into(),
            });
        };
        let (text, path) = desc.read_file(classes)?;
        let wnids = parse_wnid_list(&text, &path)?;
        if wnids.len() != desc.num_classes {
            return Err(EvalError::labels(
                &path,
                format!("expected {} wnids (num_classes), found {}", desc.num_classes, wnids.len()),
            ));
        }
        let index: HashMap<String, u32> =
            wnids.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
        if index.len() != wnids.len() {
            return Err(EvalError::labels(&path, "the wnid list repeats a wnid"));
        }

        let mut names = wnids.clone();
        if let Some(file) = &desc.class_names {
            let (text, path) = desc.read_file(file)?;
            for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let (wnid, name) = line.split_once('\t').ok_or_else(|| {
                    EvalError::labels(
                        &path,
                        format!("line {}: expected `wnid<TAB>name`, found {line:?}", number + 1),
                    )
                })?;
                if let Some(&i) = index.get(wnid) {
                    names[i as usize] = name.trim().to_string();
                }
            }
        }
        Ok(ClassTable { wnids, names, index })
    }

    /// The class indices of the descriptor's `class_subset`, in increasing order.
    pub fn subset(&self, desc: &SetDescriptor) -> Result<Option<Vec<u32>>, EvalError> {
        let Some(file) = &desc.class_subset else { return Ok(None) };
        let (text, path) = desc.read_file(file)?;
        let mut columns = Vec::new();
        for wnid in parse_wnid_list(&text, &path)? {
            let i = self.index.get(&wnid).ok_or_else(|| {
                EvalError::labels(&path, format!("{wnid} is not one of the set's classes"))
            })?;
            columns.push(*i);
        }
        columns.sort_unstable();
        columns.dedup();
        Ok(Some(columns))
    }
}

/// One wnid (`n` + 8 digits) per line; blank lines skipped.
fn parse_wnid_list(text: &str, path: &Path) -> Result<Vec<String>, EvalError> {
    let mut wnids = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !is_wnid(line) {
            return Err(EvalError::labels(
                path,
                format!("line {}: expected a wnid like n01440764, found {line:?}", number + 1),
            ));
        }
        wnids.push(line.to_string());
    }
    Ok(wnids)
}

/// Whether `name` looks like a WordNet id: `n` and eight digits.
pub fn is_wnid(name: &str) -> bool {
    name.len() == 9 && name.starts_with('n') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::find_set;

    #[test]
    fn imagenet_table_is_the_sorted_thousand_wnids_with_names() {
        let table = ClassTable::load(&find_set("imagenet").unwrap()).unwrap();
        assert_eq!(table.wnids.len(), 1000);
        assert!(table.wnids.windows(2).all(|w| w[0] < w[1]), "wnids must be sorted");
        assert_eq!(table.wnids[0], "n01440764");
        assert!(table.names[0].starts_with("tench"), "{}", table.names[0]);
    }

    #[test]
    fn a_and_r_subsets_have_200_classes() {
        for name in ["imagenet-a", "imagenet-r", "imagenet-a-clean", "imagenet-r-clean"] {
            let desc = find_set(name).unwrap();
            let table = ClassTable::load(&desc).unwrap();
            assert_eq!(table.subset(&desc).unwrap().unwrap().len(), 200, "{name}");
        }
    }
}
