//! `role_trust`: who may assume each role, over time, from the lake's own `CreateRole` and
//! `UpdateAssumeRolePolicy` records.
//!
//! `trust_policy(event_name, request_parameters, response_elements)` reads a record's policy
//! (see [`auditlake_schema::trust`]) into a struct of `role_name`, `role_arn` (from
//! `CreateRole`'s response, else NULL) and `grants`, a list of one struct per statement and
//! principal. The view numbers each role's policies in event time (a role is its account and
//! name: `UpdateAssumeRolePolicy` names no path), so that each version is valid from its record
//! to the next one, and lists one row per grant of each version.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, ListArray, StringArray, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use auditlake_schema::trust::{Grant, TrustChange};

/// The text fields of a grant, in order, then `not_principal`.
const GRANT_TEXTS: [&str; 6] = [
    "effect",
    "kind",
    "principal",
    "account",
    "actions",
    "conditions",
];

fn grant_fields() -> Fields {
    let mut fields: Vec<Field> = GRANT_TEXTS
        .iter()
        .map(|name| Field::new(*name, DataType::Utf8, true))
        .collect();
    fields.push(Field::new("not_principal", DataType::Boolean, true));
    Fields::from(fields)
}

fn grants_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(grant_fields()),
        true,
    )))
}

fn policy_fields() -> Fields {
    Fields::from(vec![
        Field::new("role_name", DataType::Utf8, true),
        Field::new("role_arn", DataType::Utf8, true),
        Field::new("grants", grants_type(), true),
    ])
}

/// See the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TrustPolicy {
    signature: Signature,
}

impl TrustPolicy {
    /// The function, to register in a session.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(TrustPolicy {
            signature: Signature::any(3, Volatility::Immutable),
        })
    }
}

fn text_of(grant: &Grant, field: &str) -> Option<String> {
    match field {
        "effect" => Some(grant.effect.clone()),
        "kind" => Some(grant.kind.clone()),
        "principal" => Some(grant.principal.clone()),
        "account" => grant.account.clone(),
        "actions" => Some(grant.actions.clone()),
        _ => grant.conditions.clone(),
    }
}

/// The struct array of `changes`, one per row (NULL where a row set no policy).
fn policies(changes: &[Option<TrustChange>]) -> Result<StructArray> {
    let all: Vec<&Grant> = changes.iter().flatten().flat_map(|c| &c.grants).collect();
    let mut children: Vec<ArrayRef> = GRANT_TEXTS
        .iter()
        .map(|field| {
            Arc::new(StringArray::from_iter(
                all.iter().map(|g| text_of(g, field)),
            )) as ArrayRef
        })
        .collect();
    children.push(Arc::new(BooleanArray::from_iter(
        all.iter().map(|g| Some(g.not_principal)),
    )));
    let grant_structs = StructArray::try_new(grant_fields(), children, None)?;
    let lengths = changes
        .iter()
        .map(|c| c.as_ref().map_or(0, |c| c.grants.len()));
    let validity: arrow::buffer::NullBuffer = changes.iter().map(Option::is_some).collect();
    let DataType::List(item) = grants_type() else {
        return exec_err!("grants type");
    };
    let grants = ListArray::try_new(
        item,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(grant_structs),
        Some(validity.clone()),
    )?;
    let names = StringArray::from_iter(
        changes
            .iter()
            .map(|c| c.as_ref().map(|c| c.role_name.clone())),
    );
    let arns = StringArray::from_iter(
        changes
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.role_arn.clone())),
    );
    Ok(StructArray::try_new(
        policy_fields(),
        vec![Arc::new(names), Arc::new(arns), Arc::new(grants)],
        Some(validity),
    )?)
}

impl ScalarUDFImpl for TrustPolicy {
    fn name(&self) -> &str {
        "trust_policy"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(policy_fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts: Vec<ArrayRef> = arrays
            .iter()
            .map(|a| arrow::compute::cast(a, &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()?;
        let strings: Vec<&StringArray> = texts
            .iter()
            .filter_map(|a| a.as_any().downcast_ref::<StringArray>())
            .collect();
        let [names, requests, responses] = strings.as_slice() else {
            return exec_err!(
                "trust_policy takes event_name, request_parameters, response_elements"
            );
        };
        let value = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
        let changes: Vec<Option<TrustChange>> = (0..args.number_rows.min(names.len()))
            .map(|i| {
                let name = value(names, i)?;
                TrustChange::from_record(
                    &name,
                    value(requests, i).as_deref(),
                    value(responses, i).as_deref(),
                )
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(policies(&changes)?)))
    }
}

/// The SQL of `role_trust` (see the module documentation).
pub const ROLE_TRUST: &str = r#"
WITH changes AS (
    SELECT event_time, event_id, event_name, recipient_account_id AS account_id,
        COALESCE(session_issuer_arn, user_arn, user_principal_id) AS changed_by,
        trust_policy(event_name, request_parameters, response_elements) AS policy
    FROM cloudtrail
    WHERE event_source = 'iam.amazonaws.com'
      AND event_name IN ('CreateRole', 'UpdateAssumeRolePolicy')
      AND error_code IS NULL
),
versions AS (
    SELECT event_time, event_id, event_name, account_id, changed_by,
        get_field(policy, 'role_name') AS role_name,
        get_field(policy, 'role_arn') AS created_arn,
        get_field(policy, 'grants') AS grants
    FROM changes
    WHERE policy IS NOT NULL
),
windows AS (
    SELECT *,
        lead(event_time) OVER (PARTITION BY account_id, role_name ORDER BY event_time, event_id) AS valid_to,
        lead(event_id) OVER (PARTITION BY account_id, role_name ORDER BY event_time, event_id) AS replaced_by_event_id,
        max(created_arn) OVER (PARTITION BY account_id, role_name) AS known_arn
    FROM versions
),
granted AS (
    SELECT account_id, role_name, known_arn, event_time, valid_to, event_id, event_name,
        changed_by, replaced_by_event_id, unnest(grants) AS g
    FROM windows
)
SELECT
    COALESCE(known_arn, 'arn:aws:iam::' || account_id || ':role/' || role_name) AS role_arn,
    role_name,
    account_id,
    event_time AS valid_from,
    valid_to,
    event_id,
    event_name,
    changed_by,
    replaced_by_event_id,
    get_field(g, 'effect') AS effect,
    get_field(g, 'kind') AS principal_type,
    get_field(g, 'principal') AS principal,
    get_field(g, 'account') AS principal_account_id,
    get_field(g, 'actions') AS actions,
    get_field(g, 'conditions') AS conditions,
    get_field(g, 'not_principal') AS not_principal
FROM granted
"#;
