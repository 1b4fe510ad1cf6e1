//! `cloudtrail_key_expiry(event_time, request_parameters, response_elements)`: when the
//! temporary key an `AssumeRole` record issued stops working (see
//! [`auditlake_schema::credentials`]), as a UTC timestamp; NULL without an event time.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use auditlake_schema::credentials::key_expires_at;

/// See the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KeyExpiry {
    signature: Signature,
}

impl KeyExpiry {
    /// The function, to register in a session.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(KeyExpiry {
            signature: Signature::any(3, Volatility::Immutable),
        })
    }
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

impl ScalarUDFImpl for KeyExpiry {
    fn name(&self) -> &str {
        "cloudtrail_key_expiry"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(utc())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [times, requests, responses] = arrays.as_slice() else {
            return exec_err!("cloudtrail_key_expiry takes three arguments");
        };
        let times = arrow::compute::cast(times, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let times = times
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Execution("event time".into()))?;
        let text = |array: &ArrayRef| -> Result<ArrayRef> {
            Ok(arrow::compute::cast(array, &DataType::Utf8)?)
        };
        let (requests, responses) = (text(requests)?, text(responses)?);
        let as_strings = |a: &ArrayRef| a.as_any().downcast_ref::<StringArray>().cloned();
        let (Some(requests), Some(responses)) = (as_strings(&requests), as_strings(&responses))
        else {
            return exec_err!("cloudtrail_key_expiry takes text parameters and response");
        };
        let expiries: TimestampMicrosecondArray = (0..rows.min(times.len()))
            .map(|i| {
                times.is_valid(i).then(|| {
                    key_expires_at(times.value(i), value(i, &requests), value(i, &responses))
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(
            expiries.with_timezone("UTC"),
        )))
    }
}

fn value(i: usize, array: &StringArray) -> Option<&str> {
    array.is_valid(i).then(|| array.value(i))
}
