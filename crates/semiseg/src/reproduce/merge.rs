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

/// A `--set KEY=VALUE` override as a TOML patch: `model.aspp_channels=256` becomes `[model] aspp_channels =
/// 256`. VALUE is read as a TOML value (number, boolean, quoted string, array, inline table); anything else is
/// taken as a bare string (`--set data.folder.preset=camvid`).
pub fn set_patch(spec: &str) -> Result<toml::Table> {
    let Some((key, value)) = spec.split_once('=') else {
        crate::error::bail!("--set `{spec}`: expected KEY=VALUE (e.g. model.aspp_channels=256)");
    };
    let path: Vec<&str> = key.trim().split('.').map(str::trim).collect();
    if path.iter().any(|k| k.is_empty()) {
        crate::error::bail!("--set `{spec}`: empty key segment in `{key}`");
    }
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}")).ok().and_then(|mut t| t.remove("v"));
    let v = parsed.unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, parents) = path.split_last().context("--set: empty key")?;
    let mut t = toml::Table::new();
    t.insert((*last).to_string(), v);
    for k in parents.iter().rev() {
        let mut outer = toml::Table::new();
        outer.insert((*k).to_string(), toml::Value::Table(t));
        t = outer;
    }
    Ok(t)
}

/// The dotted keys whose values differ between `a` and `b`, as `key: a → b` (`∅` for a missing key).
pub fn differences(a: &toml::Value, b: &toml::Value, prefix: &str) -> Vec<String> {
    match (a, b) {
        (toml::Value::Table(ta), toml::Value::Table(tb)) => {
            let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
            let mut out = Vec::new();
            for k in keys {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match (ta.get(k), tb.get(k)) {
                    (Some(x), Some(y)) => out.extend(differences(x, y, &key)),
                    (x, y) => out.push(format!("{key}: {} → {}", show(x), show(y))),
                }
            }
            out
        }
        _ if a == b => Vec::new(),
        _ => vec![format!("{prefix}: {a} → {b}")],
    }
}

fn show(v: Option<&toml::Value>) -> String {
    v.map_or_else(|| "∅".to_string(), ToString::to_string)
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

    #[test]
    fn set_overrides_become_nested_patches() -> anyhow::Result<()> {
        let mut t = merged("[model]\naspp_channels = 128\nbackbone = \"resnet18\"\n", &[])?;
        merge(&mut t, &set_patch("model.aspp_channels=256")?);
        merge(&mut t, &set_patch(" train.lr = 0.005 ")?);
        merge(&mut t, &set_patch("data.folder.preset=camvid")?);
        merge(&mut t, &set_patch("unimatch.conf_thresh=0.9")?);
        let m = t["model"].as_table().expect("table");
        assert_eq!((m["aspp_channels"].as_integer(), m["backbone"].as_str()), (Some(256), Some("resnet18")));
        assert_eq!(t["train"]["lr"].as_float(), Some(0.005));
        assert_eq!(t["data"]["folder"]["preset"].as_str(), Some("camvid"));
        assert_eq!(t["unimatch"]["conf_thresh"].as_float(), Some(0.9));
        assert!(set_patch("model.aspp_channels").is_err());
        let before = toml::Value::Table(merged("[model]\naspp_channels = 128\n", &[])?);
        let after = toml::Value::Table(t.clone());
        let d = differences(&before, &after, "");
        assert!(d.contains(&"model.aspp_channels: 128 → 256".to_string()), "{d:?}");
        assert!(d.iter().any(|l| l.starts_with("train: ∅ → ")), "{d:?}");
        assert!(set_patch("model..x=1").is_err());
        Ok(())
    }
}
