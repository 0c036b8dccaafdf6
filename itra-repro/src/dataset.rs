//! The dataset a run names, parsed once: from `--dataset`, from a configuration file, from a
//! table's cell. Everything downstream (which loop trains it, how it loads) matches on
//! [`DatasetId`] instead of testing strings.
//!
//! The configuration keeps the id as its string ([`crate::DataConfig::dataset`]), so that every
//! configuration hash, and with it every finished run, stays what it was.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use itra_data::registry::{self, DatasetSpec, Modality};

/// The dataset id of the 80/20 split of AG News' test CSV (`$ITRA_AG_NEWS_TEST`).
pub const AG_NEWS_TEST_SPLIT: &str = "ag_news-test-split";

/// A dataset, parsed.
#[derive(Debug, Clone)]
pub enum DatasetId {
    /// A dataset of `itra-data`'s registry (`fmnist`, `cifar10`, `ag_news`, ...).
    Registry(&'static DatasetSpec),
    /// An image folder, `folder:<root>` with `root/train/<class>/` and `root/val/<class>/`.
    Folder(PathBuf),
    /// The 80/20 split of AG News' test CSV ([`AG_NEWS_TEST_SPLIT`]).
    AgNewsTestSplit,
    /// Generated images, `synthetic:<C>x<H>x<W>:<classes>:<train>:<test>` (the whole id).
    Synthetic(String),
    /// Generated texts, `synthetic-text:<classes>:<train>:<test>` (the whole id).
    SyntheticText(String),
}

impl DatasetId {
    /// Whether the dataset is text (trained by fine-tuning an encoder) rather than images.
    pub fn is_text(&self) -> bool {
        match self {
            DatasetId::Registry(spec) => matches!(spec.modality, Modality::Text { .. }),
            DatasetId::AgNewsTestSplit | DatasetId::SyntheticText(_) => true,
            DatasetId::Folder(_) | DatasetId::Synthetic(_) => false,
        }
    }

    /// Every form an id may take, for error messages.
    pub fn valid_names() -> String {
        let registered: Vec<&str> = registry::DATASETS.iter().map(|d| d.id).collect();
        format!(
            "{}, {AG_NEWS_TEST_SPLIT}, folder:<path>, synthetic:<C>x<H>x<W>:<classes>:<train>:<test>, \
             synthetic-text:<classes>:<train>:<test>",
            registered.join(", ")
        )
    }
}

impl fmt::Display for DatasetId {
    /// The id as written: parsing it gives the same dataset back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetId::Registry(spec) => f.write_str(spec.id),
            DatasetId::Folder(root) => write!(f, "folder:{}", root.display()),
            DatasetId::AgNewsTestSplit => f.write_str(AG_NEWS_TEST_SPLIT),
            DatasetId::Synthetic(id) | DatasetId::SyntheticText(id) => f.write_str(id),
        }
    }
}

impl PartialEq for DatasetId {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl FromStr for DatasetId {
    type Err = String;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        if let Some(root) = id.strip_prefix("folder:") {
            if root.is_empty() {
                return Err("dataset `folder:` names no folder; write folder:<path>".to_owned());
            }
            return Ok(DatasetId::Folder(PathBuf::from(root)));
        }
        if id.starts_with("synthetic:") {
            crate::synthetic::image_spec(id).map_err(|err| format!("{err:#}"))?;
            return Ok(DatasetId::Synthetic(id.to_owned()));
        }
        if id.starts_with("synthetic-text:") {
            crate::synthetic::text_spec(id).map_err(|err| format!("{err:#}"))?;
            return Ok(DatasetId::SyntheticText(id.to_owned()));
        }
        if id == AG_NEWS_TEST_SPLIT {
            return Ok(DatasetId::AgNewsTestSplit);
        }
        registry::spec(id)
            .map(DatasetId::Registry)
            .map_err(|_| format!("unknown dataset `{id}`; expected one of {}", DatasetId::valid_names()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for id in [
            "fmnist",
            "cifar10",
            "imagenet",
            "ag_news",
            "yelp_full",
            AG_NEWS_TEST_SPLIT,
            "folder:/data/pets",
            "synthetic:1x28x28:10:256:128",
            "synthetic-text:3:96:48",
        ] {
            let parsed: DatasetId = id.parse().unwrap_or_else(|err| panic!("{id}: {err}"));
            assert_eq!(parsed.to_string(), id);
        }
    }

    #[test]
    fn text_and_images_are_told_apart_by_the_registry() {
        let text = |id: &str| id.parse::<DatasetId>().unwrap().is_text();
        assert!(text("ag_news") && text("amazon_full") && text(AG_NEWS_TEST_SPLIT) && text("synthetic-text:3:9:3"));
        assert!(!text("fmnist") && !text("stl10") && !text("folder:x") && !text("synthetic:1x4x4:2:4:4"));
    }

    #[test]
    fn a_mistyped_id_lists_every_valid_name() {
        let err = "fminst".parse::<DatasetId>().unwrap_err();
        assert!(err.contains("unknown dataset `fminst`"), "{err}");
        for name in
            ["fmnist", "kmnist", "cifar100", "stl10", "imagenet", "ag_news", AG_NEWS_TEST_SPLIT, "folder:<path>"]
        {
            assert!(err.contains(name), "{name} missing from: {err}");
        }
    }

    #[test]
    fn a_malformed_generated_id_says_what_is_wrong() {
        let err = "synthetic:3x8:4:40:12".parse::<DatasetId>().unwrap_err();
        assert!(err.contains("three dimensions"), "{err}");
        let err = "synthetic-text:4:4".parse::<DatasetId>().unwrap_err();
        assert!(err.contains("synthetic-text:<classes>:<train>:<test>"), "{err}");
        assert!("folder:".parse::<DatasetId>().is_err());
    }
}
