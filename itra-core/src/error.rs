use std::fmt;

/// Why a loss refused its inputs.
///
/// Every variant names the argument at fault and what was expected, so that a training loop
/// can stop with a message that says what went wrong ("nan in a loss", not a panic deep in a kernel).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    /// Two inputs that must share a feature width do not.
    #[error("feature width mismatch: {left_name} has {left} columns but {right_name} has {right}")]
    WidthMismatch { left_name: &'static str, left: usize, right_name: &'static str, right: usize },
    /// An input has a number of rows that does not match its labels.
    #[error("{name} has {rows} rows but {labels} labels")]
    LabelCountMismatch { name: &'static str, rows: usize, labels: usize },
    /// A batch with no rows.
    #[error("{name} is empty: a loss needs at least one sample")]
    EmptyBatch { name: &'static str },
    /// A label outside `0..num_classes`.
    #[error("label {label} at index {index} of {name} is out of range for {num_classes} classes")]
    LabelOutOfRange { name: &'static str, index: usize, label: i64, num_classes: usize },
    /// A NaN or infinity in an input.
    #[error("{name} contains a non-finite value ({what})")]
    NonFinite { name: &'static str, what: NonFiniteKind },
    /// A configuration value outside its domain.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// Which kind of non-finite value was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFiniteKind {
    Nan,
    Infinite,
}

impl fmt::Display for NonFiniteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NonFiniteKind::Nan => f.write_str("nan"),
            NonFiniteKind::Infinite => f.write_str("infinity"),
        }
    }
}

impl LossError {
    pub(crate) fn non_finite(name: &'static str, value: f64) -> Self {
        let what = if value.is_nan() { NonFiniteKind::Nan } else { NonFiniteKind::Infinite };
        LossError::NonFinite { name, what }
    }
}
