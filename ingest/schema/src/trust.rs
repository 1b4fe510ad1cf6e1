//! Who may assume a role, from the CloudTrail records that set its trust policy.
//!
//! `CreateRole` carries the policy in `requestParameters.assumeRolePolicyDocument`,
//! `UpdateAssumeRolePolicy` in `requestParameters.policyDocument`; CloudTrail writes it
//! URL-encoded (a plain JSON text is read too). Each statement grants (or, `Deny`, refuses) its
//! actions to its principals: `Principal` is `"*"` or an object of `AWS` (account ids, account
//! roots, roles, users, assumed-role sessions, `*`), `Service`, `Federated` and `CanonicalUser`,
//! each a text or a list. [`TrustChange::from_record`] reads one record into the role it names
//! and one [`Grant`] per statement and principal, with the statement's conditions as JSON.

use serde_json::Value;

/// One principal a statement names, with what the statement says of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// `Allow` or `Deny`.
    pub effect: String,
    /// `account`, `role`, `user`, `session`, `any` (the AWS `*`), `service`, `federated`,
    /// `canonical_user`, or `aws` for an AWS principal of another shape.
    pub kind: String,
    /// The principal as written (a bare account id as written too).
    pub principal: String,
    /// The account an AWS principal belongs to, when it names one.
    pub account: Option<String>,
    /// The statement's actions, comma-separated.
    pub actions: String,
    /// The statement's `Condition`, as JSON text; `None` without one.
    pub conditions: Option<String>,
    /// Whether the statement is a `NotPrincipal` one (every principal but these).
    pub not_principal: bool,
}

/// A trust policy as one record set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustChange {
    pub role_name: String,
    /// The role's ARN when the record gives it (`CreateRole`'s response), path included.
    pub role_arn: Option<String>,
    pub grants: Vec<Grant>,
}

/// `text` URL-decoded when it is URL-encoded (CloudTrail's way), as it is otherwise.
fn decoded(text: &str) -> String {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return text.to_owned();
    }
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// A text or a list of texts, as a list.
fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The kind and account of an `AWS` principal.
fn aws_kind(principal: &str) -> (&'static str, Option<String>) {
    if principal == "*" {
        return ("any", None);
    }
    if principal.len() == 12 && principal.bytes().all(|b| b.is_ascii_digit()) {
        return ("account", Some(principal.to_owned()));
    }
    let account = principal
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    let resource = principal.splitn(6, ':').nth(5).unwrap_or_default();
    let kind = if resource == "root" {
        "account"
    } else if resource.starts_with("role/") {
        "role"
    } else if resource.starts_with("user/") {
        "user"
    } else if resource.starts_with("assumed-role/") {
        "session"
    } else {
        "aws"
    };
    (kind, account)
}

/// The grants of a policy document (JSON text, URL-encoded or not); empty when unreadable.
pub fn grants(document: &str) -> Vec<Grant> {
    let Ok(policy) = serde_json::from_str::<Value>(&decoded(document)) else {
        return Vec::new();
    };
    let statements = match policy.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(statement @ Value::Object(_)) => vec![statement.clone()],
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for statement in &statements {
        let effect = statement
            .get("Effect")
            .and_then(Value::as_str)
            .unwrap_or("Allow")
            .to_owned();
        let actions = statement
            .get("Action")
            .map(texts)
            .unwrap_or_default()
            .join(",");
        let conditions = statement.get("Condition").map(Value::to_string);
        let (principals, not_principal) =
            match (statement.get("Principal"), statement.get("NotPrincipal")) {
                (Some(p), _) => (p, false),
                (None, Some(p)) => (p, true),
                (None, None) => continue,
            };
        let mut add = |kind: &str, principal: String, account: Option<String>| {
            out.push(Grant {
                effect: effect.clone(),
                kind: kind.to_owned(),
                principal,
                account,
                actions: actions.clone(),
                conditions: conditions.clone(),
                not_principal,
            });
        };
        match principals {
            Value::String(any) if any == "*" => add("any", "*".to_owned(), None),
            Value::Object(by_type) => {
                for (principal_type, values) in by_type {
                    for principal in texts(values) {
                        match principal_type.as_str() {
                            "AWS" => {
                                let (kind, account) = aws_kind(&principal);
                                add(kind, principal, account);
                            }
                            "Service" => add("service", principal, None),
                            "Federated" => add("federated", principal, None),
                            "CanonicalUser" => add("canonical_user", principal, None),
                            other => add(&other.to_ascii_lowercase(), principal, None),
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

impl TrustChange {
    /// The change a `CreateRole` or `UpdateAssumeRolePolicy` record made (its request
    /// parameters and response elements as JSON text); `None` for other events or a record
    /// without a role name or policy.
    pub fn from_record(
        event_name: &str,
        request_parameters: Option<&str>,
        response_elements: Option<&str>,
    ) -> Option<TrustChange> {
        let field = match event_name {
            "CreateRole" => "assumeRolePolicyDocument",
            "UpdateAssumeRolePolicy" => "policyDocument",
            _ => return None,
        };
        let request: Value = serde_json::from_str(request_parameters?).ok()?;
        let role_name = request.get("roleName")?.as_str()?.to_owned();
        let document = request.get(field)?.as_str()?;
        let role_arn = response_elements
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|r| r.pointer("/role/arn")?.as_str().map(str::to_owned));
        Some(TrustChange {
            role_name,
            role_arn,
            grants: grants(document),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_principal_shape_of_a_url_encoded_policy_is_one_grant() {
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/app/api","444455556666",
                "arn:aws:iam::777788889999:root","arn:aws:iam::111122223333:user/alice",
                "arn:aws:sts::111122223333:assumed-role/x/s"]},"Action":"sts:AssumeRole",
             "Condition":{"StringEquals":{"sts:ExternalId":"e-1"}}},
            {"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com","Federated":"cognito-identity.amazonaws.com"},
             "Action":["sts:AssumeRole","sts:AssumeRoleWithWebIdentity"]},
            {"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}]}"#;
        let encoded: String =
            percent_encoding::utf8_percent_encode(policy, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let grants = grants(&encoded);
        assert_eq!(grants, super::grants(policy), "encoded or not, the same");
        let kinds: Vec<(&str, &str, Option<&str>)> = grants
            .iter()
            .map(|g| (g.kind.as_str(), g.principal.as_str(), g.account.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "role",
                    "arn:aws:iam::111122223333:role/app/api",
                    Some("111122223333")
                ),
                ("account", "444455556666", Some("444455556666")),
                (
                    "account",
                    "arn:aws:iam::777788889999:root",
                    Some("777788889999")
                ),
                (
                    "user",
                    "arn:aws:iam::111122223333:user/alice",
                    Some("111122223333")
                ),
                (
                    "session",
                    "arn:aws:sts::111122223333:assumed-role/x/s",
                    Some("111122223333")
                ),
                ("federated", "cognito-identity.amazonaws.com", None),
                ("service", "ec2.amazonaws.com", None),
                ("any", "*", None),
            ]
        );
        assert_eq!(
            grants[0].conditions.as_deref(),
            Some(r#"{"StringEquals":{"sts:ExternalId":"e-1"}}"#)
        );
        assert_eq!(
            grants[5].actions,
            "sts:AssumeRole,sts:AssumeRoleWithWebIdentity"
        );
        assert_eq!(grants[7].effect, "Deny");
        assert!(super::grants("%7Bnot json").is_empty());
    }

    #[test]
    fn a_record_names_its_role_and_create_role_its_arn() {
        let create = TrustChange::from_record(
            "CreateRole",
            Some(r#"{"roleName":"r","path":"/p/","assumeRolePolicyDocument":"%7B%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22lambda.amazonaws.com%22%7D%7D%7D"}"#),
            Some(r#"{"role":{"arn":"arn:aws:iam::1:role/p/r"}}"#),
        )
        .expect("change");
        assert_eq!(create.role_name, "r");
        assert_eq!(create.role_arn.as_deref(), Some("arn:aws:iam::1:role/p/r"));
        assert_eq!(create.grants.len(), 1);
        assert_eq!(create.grants[0].principal, "lambda.amazonaws.com");
        let update = TrustChange::from_record(
            "UpdateAssumeRolePolicy",
            Some(r#"{"roleName":"r","policyDocument":"{\"Statement\":[]}"}"#),
            None,
        )
        .expect("change");
        assert!(update.grants.is_empty() && update.role_arn.is_none());
        assert!(TrustChange::from_record("GetRole", Some("{}"), None).is_none());
    }
}
