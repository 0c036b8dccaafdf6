//! Figure building blocks for the paper's Figures 1-3: an exact t-SNE ([`tsne`]) and line and
//! scatter plots written as both PNG and SVG ([`plot`]).
//!
//! This module only turns numbers into pictures. It never trains, reads run directories or
//! decides what a figure shows; the figure modules in `xtask` do that and hand over plain series.
//! It never fetches anything either: text is drawn with a TTF font found on this machine.

pub mod plot;
pub mod tsne;

pub use plot::{Panel, PlotError, ScatterGroup, Series, line_figure, scatter_figure};
pub use tsne::{LearningRate, TsneConfig, TsneError, tsne, tsne_flat};
