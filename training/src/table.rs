//! From the feature store's dataset (a polars frame) to the model zoo's [`Table`].

use livora_models::encoding::Skipped;
use livora_models::{Column, FeatureRef, Table};
use polars::prelude::*;

use crate::error::Result;

/// What [`table_of`] returns: entity keys, row times (µs), the feature table, the features it
/// holds and those left out (with the reason).
pub type TableParts = (Vec<Option<String>>, Vec<i64>, Table, Vec<FeatureRef>, Vec<Skipped>);

/// The entity keys, row times (µs) and feature columns of `frame`, with the features that cannot
/// be model inputs (timestamps, other types) left out and listed with the reason.
pub fn table_of(frame: &DataFrame, key: &str, timestamp: &str, features: &[FeatureRef]) -> Result<TableParts> {
    let keys: Vec<Option<String>> =
        frame.column(key)?.cast(&DataType::String)?.str()?.iter().map(|k| k.map(str::to_owned)).collect();
    let times: Vec<i64> =
        frame.column(timestamp)?.cast(&DataType::Int64)?.i64()?.iter().map(|t| t.unwrap_or(i64::MIN)).collect();
    let mut table = Table::default();
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for f in features {
        let name = f.column();
        let column = frame.column(&name)?;
        let converted = match column.dtype() {
            DataType::Boolean | DataType::Float32 | DataType::Float64 => Some(numeric(column)?),
            d if d.is_integer() => Some(numeric(column)?),
            DataType::String => Some(Column::Categorical(column.str()?.iter().map(|v| v.map(str::to_owned)).collect())),
            DataType::Datetime(..) | DataType::Date => {
                skipped.push(Skipped {
                    name: name.clone(),
                    reason: "an instant: models read durations (`days_since` features) instead".into(),
                });
                None
            }
            other => {
                skipped.push(Skipped { name: name.clone(), reason: format!("type {other} is not a model input") });
                None
            }
        };
        if let Some(c) = converted {
            table.push(name, c)?;
            kept.push(f.clone());
        }
    }
    Ok((keys, times, table, kept, skipped))
}

fn numeric(column: &polars::prelude::Column) -> Result<Column> {
    Ok(Column::Numeric(column.cast(&DataType::Float64)?.f64()?.iter().collect()))
}
