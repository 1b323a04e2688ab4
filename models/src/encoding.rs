//! Feature encoding: from feature values (numbers, strings, missing) to the numeric vector a
//! model reads. Fitted once on the training rows and stored in the artifact, then applied by
//! training and by inference alike, so the two cannot disagree on what a row means.
//!
//! - A **numeric** feature (numbers and booleans) becomes its standardised value, `(x − mean) /
//!   std` over the training rows, plus a missing indicator. A missing value is imputed with the
//!   training mean (0 after standardising) and flags the indicator: the model learns what missing
//!   means; it is never a silent zero of the raw scale.
//! - A **categorical** feature (strings) becomes one-hot columns for its frequent training values
//!   (up to [`MAX_LEVELS`], each seen in at least [`MIN_LEVEL_SHARE`] of the rows), a column for
//!   any other value, and a missing indicator.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most one-hot columns a categorical feature gets (the rest share "other").
pub const MAX_LEVELS: usize = 20;
/// The least share of training rows a value needs to get its own column.
pub const MIN_LEVEL_SHARE: f64 = 0.005;

/// One value of a feature, as read from the offline or the online store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input<'a> {
    /// No value (never written, or older than the view's ttl).
    Missing,
    /// A number or a boolean (1 / 0).
    Number(f64),
    /// A string.
    Text(&'a str),
}

/// A column of training data, one value per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers (booleans as 1 / 0); `None` is missing.
    Numeric(Vec<Option<f64>>),
    /// Strings; `None` is missing.
    Categorical(Vec<Option<String>>),
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Numeric(v) => v.len(),
            Self::Categorical(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` as an [`Input`].
    pub fn input(&self, i: usize) -> Input<'_> {
        match self {
            Self::Numeric(v) => v[i].filter(|x| x.is_finite()).map_or(Input::Missing, Input::Number),
            Self::Categorical(v) => v[i].as_deref().map_or(Input::Missing, Input::Text),
        }
    }
}

/// Named columns of equal length: the features of a training set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Feature names, in column order.
    pub names: Vec<String>,
    /// The columns.
    pub columns: Vec<Column>,
}

impl Table {
    /// Number of rows (0 without columns).
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Appends a column; its length must match the others'.
    pub fn push(&mut self, name: impl Into<String>, column: Column) -> Result<()> {
        let name = name.into();
        if !self.columns.is_empty() && column.len() != self.rows() {
            return Err(Error::InvalidArgument(format!(
                "column `{name}` has {} rows, the table {}",
                column.len(),
                self.rows()
            )));
        }
        self.names.push(name);
        self.columns.push(column);
        Ok(())
    }

    /// The rows at `indices`, in that order.
    pub fn take(&self, indices: &[usize]) -> Table {
        let columns = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Numeric(v) => Column::Numeric(indices.iter().map(|&i| v[i]).collect()),
                Column::Categorical(v) => Column::Categorical(indices.iter().map(|&i| v[i].clone()).collect()),
            })
            .collect();
        Table { names: self.names.clone(), columns }
    }
}

/// How one feature is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    /// Standardised, with a missing indicator.
    Numeric {
        /// Training mean (the imputed value).
        mean: f64,
        /// Training standard deviation (1 when constant).
        scale: f64,
    },
    /// One-hot over `levels`, then "other", then a missing indicator.
    Categorical {
        /// The values with a column of their own.
        levels: Vec<String>,
    },
    /// The number as it is, missing as NaN: the input of a model imported as ONNX, which does
    /// its own preprocessing.
    Raw,
}

/// One feature of the encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedFeature {
    /// The feature's name (`view__feature`).
    pub name: String,
    /// How it is encoded.
    #[serde(flatten)]
    pub encoding: Encoding,
    /// Share of training rows where it was missing.
    pub missing_rate: f64,
}

impl EncodedFeature {
    /// Number of model columns.
    pub fn width(&self) -> usize {
        match &self.encoding {
            Encoding::Numeric { .. } => 2,
            Encoding::Categorical { levels } => levels.len() + 2,
            Encoding::Raw => 1,
        }
    }
}

/// A feature left out of the model, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The feature.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// The fitted encoding of every feature a model reads, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    /// The features.
    pub features: Vec<EncodedFeature>,
    /// Features of the dataset the model does not read.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

impl Encoder {
    /// The encoding of a model trained elsewhere (ONNX, a SageMaker endpoint): each named
    /// feature as its raw number, in order.
    pub fn raw(names: impl IntoIterator<Item = String>) -> Self {
        Self {
            features: names
                .into_iter()
                .map(|name| EncodedFeature { name, encoding: Encoding::Raw, missing_rate: 0.0 })
                .collect(),
            skipped: Vec::new(),
        }
    }

    /// Fits the encoding on `table` (the training rows). A feature missing on every row is
    /// skipped, with the reason recorded.
    pub fn fit(table: &Table) -> Result<Self> {
        let rows = table.rows();
        if rows == 0 {
            return Err(Error::InsufficientData("no training rows to fit the feature encoding on".into()));
        }
        let mut features = Vec::new();
        let mut skipped = Vec::new();
        for (name, column) in table.names.iter().zip(&table.columns) {
            let present: usize = (0..rows).filter(|&i| column.input(i) != Input::Missing).count();
            if present == 0 {
                skipped.push(Skipped { name: name.clone(), reason: "missing on every training row".into() });
                continue;
            }
            let missing_rate = 1.0 - present as f64 / rows as f64;
            let encoding = match column {
                Column::Numeric(values) => {
                    let xs: Vec<f64> = values.iter().flatten().copied().filter(|x| x.is_finite()).collect();
                    let n = xs.len() as f64;
                    let mean = xs.iter().sum::<f64>() / n;
                    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                    let scale = if var > 0.0 { var.sqrt() } else { 1.0 };
                    Encoding::Numeric { mean, scale }
                }
                Column::Categorical(values) => {
                    let mut counts: HashMap<&str, usize> = HashMap::new();
                    for v in values.iter().flatten() {
                        *counts.entry(v.as_str()).or_default() += 1;
                    }
                    let mut levels: Vec<(&str, usize)> =
                        counts.into_iter().filter(|&(_, c)| c as f64 >= MIN_LEVEL_SHARE * rows as f64).collect();
                    // Most frequent first, then by name: deterministic whatever the hash order.
                    levels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    levels.truncate(MAX_LEVELS);
                    Encoding::Categorical { levels: levels.into_iter().map(|(l, _)| l.to_owned()).collect() }
                }
            };
            features.push(EncodedFeature { name: name.clone(), encoding, missing_rate });
        }
        if features.is_empty() {
            return Err(Error::InsufficientData("every feature is missing on every training row".into()));
        }
        Ok(Self { features, skipped })
    }

    /// Number of model columns.
    pub fn width(&self) -> usize {
        self.features.iter().map(EncodedFeature::width).sum()
    }

    /// The name of every model column: `f`, `f (missing)`, `f=level`, `f=(other)`.
    pub fn column_names(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.width());
        for f in &self.features {
            match &f.encoding {
                Encoding::Numeric { .. } => out.push(f.name.clone()),
                Encoding::Categorical { levels } => {
                    out.extend(levels.iter().map(|l| format!("{}={l}", f.name)));
                    out.push(format!("{}=(other)", f.name));
                }
                Encoding::Raw => {
                    out.push(f.name.clone());
                    continue;
                }
            }
            out.push(format!("{} (missing)", f.name));
        }
        out
    }

    /// The feature (index into [`Encoder::features`]) of every model column.
    pub fn column_features(&self) -> Vec<usize> {
        self.features.iter().enumerate().flat_map(|(i, f)| std::iter::repeat_n(i, f.width())).collect()
    }

    /// Sums per-column contributions into per-feature ones ("country" moved the score, not
    /// "country=FR") and keeps the `top` largest in magnitude, largest first.
    pub fn feature_contributions(&self, columns: &[f64], top: usize) -> Vec<(String, f64)> {
        let mut per_feature = vec![0.0; self.features.len()];
        for (c, f) in columns.iter().zip(self.column_features()) {
            per_feature[f] += c;
        }
        let mut ranked: Vec<(String, f64)> = self.features.iter().map(|f| f.name.clone()).zip(per_feature).collect();
        ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(top);
        ranked
    }

    /// Appends the encoding of one row (`inputs` in [`Encoder::features`] order) to `out`.
    /// A number given for a categorical feature, or text for a numeric one, is an error naming
    /// the feature.
    pub fn encode_into(&self, inputs: &[Input<'_>], out: &mut Vec<f64>) -> Result<()> {
        if inputs.len() != self.features.len() {
            return Err(Error::InvalidArgument(format!(
                "the model reads {} features, {} were given",
                self.features.len(),
                inputs.len()
            )));
        }
        for (f, input) in self.features.iter().zip(inputs) {
            match (&f.encoding, input) {
                (Encoding::Numeric { mean, scale }, Input::Number(x)) if x.is_finite() => {
                    out.extend([(x - mean) / scale, 0.0]);
                }
                (Encoding::Numeric { .. }, Input::Missing | Input::Number(_)) => out.extend([0.0, 1.0]),
                (Encoding::Categorical { levels }, Input::Text(s)) => {
                    let hit = levels.iter().position(|l| l == s);
                    out.extend((0..levels.len()).map(|i| if hit == Some(i) { 1.0 } else { 0.0 }));
                    out.extend([if hit.is_none() { 1.0 } else { 0.0 }, 0.0]);
                }
                (Encoding::Categorical { levels }, Input::Missing) => {
                    out.extend(std::iter::repeat_n(0.0, levels.len() + 1));
                    out.push(1.0);
                }
                (Encoding::Raw, Input::Number(x)) => out.push(*x),
                (Encoding::Raw, Input::Missing) => out.push(f64::NAN),
                (Encoding::Numeric { .. } | Encoding::Raw, Input::Text(s)) => {
                    return Err(Error::InvalidArgument(format!("feature `{}` is numeric, got the text {s:?}", f.name)));
                }
                (Encoding::Categorical { .. }, Input::Number(x)) => {
                    return Err(Error::InvalidArgument(format!(
                        "feature `{}` is categorical, got the number {x}",
                        f.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Encodes every row of `table` (matched to the encoder's features by name) into a
    /// row-major matrix of [`Encoder::width`] columns.
    pub fn encode_table(&self, table: &Table) -> Result<Vec<f64>> {
        let columns: Vec<&Column> = self
            .features
            .iter()
            .map(|f| {
                table.names.iter().position(|n| n == &f.name).map(|i| &table.columns[i]).ok_or_else(|| {
                    Error::InvalidArgument(format!("the dataset has no column `{}`, which the model reads", f.name))
                })
            })
            .collect::<Result<_>>()?;
        let rows = table.rows();
        let mut out = Vec::with_capacity(rows * self.width());
        let mut inputs = Vec::with_capacity(columns.len());
        for i in 0..rows {
            inputs.clear();
            inputs.extend(columns.iter().map(|c| c.input(i)));
            self.encode_into(&inputs, &mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::default();
        t.push("n", Column::Numeric(vec![Some(1.0), Some(3.0), None, Some(f64::NAN)])).expect("push");
        t.push("c", Column::Categorical(vec![Some("a".into()), Some("b".into()), Some("a".into()), None]))
            .expect("push");
        t.push("empty", Column::Numeric(vec![None; 4])).expect("push");
        t
    }

    #[test]
    fn fits_standardises_one_hots_and_flags_missing() {
        let e = Encoder::fit(&table()).expect("fit");
        assert_eq!(e.skipped, vec![Skipped { name: "empty".into(), reason: "missing on every training row".into() }]);
        assert_eq!(e.features[0].encoding, Encoding::Numeric { mean: 2.0, scale: 1.0 });
        assert_eq!(e.features[0].missing_rate, 0.5);
        assert_eq!(e.features[1].encoding, Encoding::Categorical { levels: vec!["a".into(), "b".into()] });
        assert_eq!(e.column_names(), ["n", "n (missing)", "c=a", "c=b", "c=(other)", "c (missing)"]);
        assert_eq!(e.column_features(), [0, 0, 1, 1, 1, 1]);
        let m = e.encode_table(&table()).expect("encode");
        #[rustfmt::skip]
        assert_eq!(m, [
            -1.0, 0.0, 1.0, 0.0, 0.0, 0.0,
             1.0, 0.0, 0.0, 1.0, 0.0, 0.0,
             0.0, 1.0, 1.0, 0.0, 0.0, 0.0,
             0.0, 1.0, 0.0, 0.0, 0.0, 1.0,
        ]);
    }

    #[test]
    fn unseen_values_go_to_other_and_wrong_types_name_the_feature() {
        let e = Encoder::fit(&table()).expect("fit");
        let mut out = Vec::new();
        e.encode_into(&[Input::Number(2.0), Input::Text("zzz")], &mut out).expect("encode");
        assert_eq!(out, [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let err = e.encode_into(&[Input::Text("x"), Input::Missing], &mut Vec::new()).expect_err("text for a number");
        assert!(err.to_string().contains("feature `n` is numeric"), "{err}");
        let err = e.encode_into(&[Input::Missing], &mut Vec::new()).expect_err("too few");
        assert!(err.to_string().contains("reads 2 features, 1 were given"), "{err}");
        let mut t = table();
        t.names[1] = "renamed".into();
        let err = e.encode_table(&t).expect_err("column gone");
        assert!(err.to_string().contains("no column `c`"), "{err}");
    }

    #[test]
    fn the_encoder_round_trips_through_json() {
        let e = Encoder::fit(&table()).expect("fit");
        let json = serde_json::to_string(&e).expect("to json");
        assert_eq!(serde_json::from_str::<Encoder>(&json).expect("from json"), e);
    }
}
