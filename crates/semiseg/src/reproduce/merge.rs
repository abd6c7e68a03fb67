//! Deep merge of TOML tables: a recipe row is a patch over the base config.

use crate::error::Context;
use crate::Result;

/// Merges `patch` into `base`: tables merge key by key, anything else is replaced.
pub fn merge(base: &mut toml::Table, patch: &toml::Table) {
    for (k, v) in patch {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(p)) => merge(b, p),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `base` with each patch applied in order.
pub fn merged(base: &str, patches: &[&str]) -> Result<toml::Table> {
    let mut t: toml::Table = toml::from_str(base).context("recipe base config")?;
    for p in patches {
        let pt: toml::Table = toml::from_str(p).with_context(|| format!("recipe patch `{p}`"))?;
        merge(&mut t, &pt);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_merge_and_values_replace() -> anyhow::Result<()> {
        let t = merged("a = 1\n[s]\nx = 1\ny = 2\n", &["[s]\ny = 3\nz = 4\n", "a = 5\n"])?;
        assert_eq!(t["a"].as_integer(), Some(5));
        let s = t["s"].as_table().expect("table");
        assert_eq!((s["x"].as_integer(), s["y"].as_integer(), s["z"].as_integer()), (Some(1), Some(3), Some(4)));
        Ok(())
    }
}
