//! The "[design] choices" section of `report.md`: the settings that are this project's reading, not a paper's.
//! The recipe-wide notes come from the recipe's family; each method's notes appear only when a row of the table
//! uses that method (found in the rows' configuration text), naming the keys and their defaults so that a
//! `--set` override is visible in the configuration listed below them.

/// The [design] settings of the real-photo recipes (`docs/real-data.md`).
pub(super) const REAL_PHOTO_DESIGN: &str = "\
- Encoder: torchvision's ImageNet MobileNetV2 (`@mobilenet_v2`); DeepLabV3+ at output stride 16 with ASPP width 128 \
  (256 in the usual reference).\n\
- CamVid frames halved to 240×180 on load (horse and Stanford photos as they are); random scale 0.5–2.0, crop 160², \
  flip; batch 8 labelled (+ 8 unlabelled).\n\
- SGD, lr 0.01 (decoder ×10), momentum 0.9, weight decay 1e-4, poly decay over the run; evaluation every 250 \
  iterations.\n\
- UniMatch: τ = 0.95; strong-view blur σ ∈ [0.05, 1.0] (UniMatch's range for 321-px crops scaled by 160/321).\n\
- Labelled subsets and Stanford Background's 72 validation ids are seeded draws (`split_seed` 0), the same for every \
  training seed.\n\
- Test numbers: the checkpoint with the best validation mIoU, evaluated once on the test split.\n";

/// One method family's notes and the test that a row's configuration uses it.
struct Note {
    used_by: fn(method: &str, config: &str) -> bool,
    text: &'static str,
}

const NOTES: &[Note] = &[
    Note {
        used_by: |_, c| c.contains("\n[data.sparse]\n"),
        text: "Sparse labels: each training image's labelled pixels are drawn uniformly, once (`[data.sparse]`).",
    },
    Note {
        used_by: |_, c| c.contains("\n[tv]\n"),
        text: "TV: its form (variant A, the anisotropic L1 norm per class; B and C as rows), its weight λ \
               (`tv.weight`, 0.1 where the configuration below does not set it), no warm-up, on the full-resolution \
               softmax of the labelled batch.",
    },
    Note {
        used_by: |m, _| m.contains("+mrf"),
        text: "MRF baseline: 4-connected Potts model with contrast weights (none in the `-potts` rows), mean field, 5 \
               iterations, β chosen on validation from `mrf.beta_grid` ({0.25 … 16} where the configuration below \
               does not set it).",
    },
    Note {
        used_by: |_, c| c.contains("[recon]\nenabled = true"),
        text: "Reconstruction (`[recon]`; the paper gives only its abstract): a decoder from the encoder's stride-16 \
               features (`recon.input` c4) through 4 bilinear ×2 stages (widths 256, 128, 64, 32, 32), no skip \
               connection, back to the normalised image; mean squared error over valid pixels, weight \
               `recon.weight` (1.0 where the configuration below does not set it), no warm-up; it reconstructs the \
               labelled images and, in semi-supervised rows, the weak unlabelled views. Object/background rows \
               (`mode = \"fgbg\"`) blend an object and a background output by a detached foreground probability \
               (ground truth on labelled pixels, confident pseudo-labels on unlabelled ones, the predicted \
               probability elsewhere); the object classes are `recon.fg_classes`, every class but 0 where the \
               configuration below does not set them.",
    },
    Note {
        used_by: |_, c| c.contains("[mim]\nmode = \"plain\"") || c.contains("[mim]\nmode = \"classwise\""),
        text: "MIM (`[mim]`; the paper gives only its abstract): 32-pixel patches, half of them masked; a 1×1 conv + \
               PixelShuffle head on the decoder's stride-4 features, L1 on masked pixels, `mim.weight_rec` 1.0; \
               class-wise rows reconstruct each class region (pseudo-labels at τ, ground truth on labelled images) \
               from its own visible part only, at most 3 classes per image; feature aggregation pulls masked-pixel \
               features to the visible prototype of their class (cosine, `mim.weight_fa` 0.1); semantic MIM trains \
               the masked weak view on the pseudo-labels (`mim.weight_sem` 0.5); one warm-up epoch. Values are the \
               defaults where the configuration below does not set them.",
    },
    Note {
        used_by: |_, c| c.contains("method = \"guidedmix\""),
        text: "GuidedMix: the official code's settings (sigmoid focal loss γ ½, α ½, weight 10, random pairs), \
               applied to the DeepLabV3+ head by mixing its ASPP output and reduced low-level features with one λ \
               per pair; λ and pairs from the project's RNG; unlabelled crops skip the code's `cat_max_ratio` check \
               (it reads unlabelled ground truth); MITrans width = the ASPP width.",
    },
];

/// The notes of the methods that the table's rows use, one bullet each, in a fixed order.
pub(super) fn method_design(configs: &[(String, String)]) -> String {
    NOTES.iter().filter(|n| configs.iter().any(|(m, c)| (n.used_by)(m, c))).map(|n| format!("- {}\n", n.text)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(m: &str, c: &str) -> (String, String) {
        (m.to_string(), c.to_string())
    }

    /// The TV recipes' report names the sparse labels, the TV term and the MRF baseline as [design] choices; a
    /// table without those rows names none of them.
    #[test]
    fn tv_rows_name_their_design_choices() {
        let tv = [
            cfg("supervised-1pct", "[model]\nnclass = 2\n\n[data.sparse]\nratio = 0.01\n"),
            cfg("supervised-1pct+mrf", "[data.sparse]\nratio = 0.01\n"),
            cfg("supervised-1pct+tv", "[model]\nnclass = 2\n\n[tv]\nenabled = true\n"),
        ];
        let notes = method_design(&tv);
        for want in ["Sparse labels", "TV: its form", "MRF baseline"] {
            assert!(notes.contains(want), "{want}: {notes}");
        }
        assert!(!notes.contains("Reconstruction") && !notes.contains("GuidedMix"), "{notes}");
        assert_eq!(method_design(&[cfg("unimatch", "[semi]\nmethod = \"unimatch\"\n")]), "");
    }

    /// The semi-supervised table names the reconstruction, MIM and GuidedMix choices once each, when a row uses
    /// them; a disabled `[recon]` or `[mim] mode = "off"` (every UniMatch row's printed defaults) names nothing.
    #[test]
    fn method_rows_name_their_design_choices() {
        let off = "[mim]\nmode = \"off\"\n\n[recon]\nenabled = false\n";
        assert_eq!(method_design(&[cfg("unimatch", off)]), "");
        let table = [
            cfg("unimatch", off),
            cfg("unimatch+recon", "[mim]\nmode = \"off\"\n\n[recon]\nenabled = true\nmode = \"plain\"\n"),
            cfg("unimatch+recon-fgbg", "[recon]\nenabled = true\nmode = \"fgbg\"\n"),
            cfg("unimatch+plain-mim", "[mim]\nmode = \"plain\"\n"),
            cfg("unimatch+classwise-mim", "[mim]\nmode = \"classwise\"\n"),
            cfg("guidedmix", "[semi]\nmethod = \"guidedmix\"\n"),
        ];
        let notes = method_design(&table);
        for want in ["Reconstruction (`[recon]`", "MIM (`[mim]`", "GuidedMix: the official"] {
            assert_eq!(notes.matches(want).count(), 1, "{want}: {notes}");
        }
        assert_eq!(notes.lines().count(), 3, "{notes}");
    }
}
