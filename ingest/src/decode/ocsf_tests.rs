//! OCSF audit messages (MongoDB 8's `auditLog.schema: OCSF`) of each class MongoDB writes,
//! built field by field from the schema MongoDB publishes: what lands in columns means what it
//! means for the `mongo` schema, and no field is lost.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::*;

fn ctx() -> ObjectContext<'static> {
    ObjectContext {
        source_uri: "mem://ocsf",
        ingested_at_micros: 1,
        atlas: None,
    }
}

fn row(message: &Value) -> RecordBatch {
    let line = serde_json::to_vec(message).expect("json");
    let decoded =
        decode_object(Format::MongoAudit, &line, &ctx(), DecodeLimits::default()).expect("decode");
    assert!(decoded.rejected.is_none(), "{message}");
    decoded.mongodb_audit.expect("one row")
}

fn text(batch: &RecordBatch, column: &str) -> Option<String> {
    let array = batch.column_by_name(column).expect(column);
    if let Some(list) = array.as_list_opt::<i32>() {
        return list.is_valid(0).then(|| {
            let values = list.value(0);
            let values = values.as_string::<i32>();
            (0..values.len())
                .map(|i| values.value(i))
                .collect::<Vec<_>>()
                .join(",")
        });
    }
    let array = array.as_string::<i32>();
    array.is_valid(0).then(|| array.value(0).to_owned())
}

fn result(batch: &RecordBatch) -> Option<i32> {
    let array = batch
        .column_by_name("result")
        .expect("result")
        .as_primitive::<Int32Type>();
    array.is_valid(0).then(|| array.value(0))
}

/// Every leaf of `value` with its path.
fn leaves(value: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                leaves(item, format!("{path}/{key}"), out);
            }
        }
        _ => out.push((path, value.clone())),
    }
}

/// Asserts that every field of `message` is in `unmapped` at its path, or under one of
/// `in_columns` (paths whose value the test checked in a column).
fn nothing_lost(message: &Value, batch: &RecordBatch, in_columns: &[&str]) {
    let unmapped: Value = text(batch, "unmapped")
        .map(|u| serde_json::from_str(&u).expect("unmapped is JSON"))
        .unwrap_or(json!({}));
    let mut all = Vec::new();
    leaves(message, String::new(), &mut all);
    for (path, value) in all {
        if in_columns.iter().any(|c| path.starts_with(c)) {
            continue;
        }
        assert_eq!(
            unmapped.pointer(&path),
            Some(&value),
            "{path} is neither in a column nor in unmapped: {unmapped}"
        );
    }
}

fn endpoints() -> (Value, Value) {
    (
        json!({"ip": "203.0.113.7", "port": 51234}),
        json!({"ip": "10.0.0.5", "port": 27017}),
    )
}

fn metadata() -> Value {
    json!({"correlation_uid": "5f1c0c27-0a44-4b28-9c57-6c3e8a1e2f01", "product": "MongoDB Server", "version": "1.0.0"})
}

#[test]
fn authentication_3002_is_an_authenticate_with_its_result_and_roles_as_in_the_mongo_schema() {
    let (src, dst) = endpoints();
    let login = json!({
        "activity_id": 1, "category_uid": 3, "class_uid": 3002, "time": 1_761_976_800_000_i64,
        "severity_id": 1, "type_uid": 300201, "status_id": 1, "metadata": metadata(),
        "actor": {"user": {"type_id": 1, "name": "admin.dba", "groups": [{"name": "admin.root"}, {"name": "orders.readWrite"}]}},
        "src_endpoint": src, "dst_endpoint": dst, "auth_protocol": "SCRAM-SHA-256",
    });
    let rows = row(&login);
    assert_eq!(text(&rows, "atype").as_deref(), Some("authenticate"));
    assert_eq!(result(&rows), Some(0));
    assert_eq!(text(&rows, "user").as_deref(), Some("dba"));
    assert_eq!(text(&rows, "users").as_deref(), Some("dba@admin"));
    assert_eq!(
        text(&rows, "roles").as_deref(),
        Some("root@admin,readWrite@orders")
    );
    assert_eq!(text(&rows, "remote_ip").as_deref(), Some("203.0.113.7"));
    assert_eq!(text(&rows, "mechanism").as_deref(), Some("SCRAM-SHA-256"));
    nothing_lost(
        &login,
        &rows,
        &["/time", "/src_endpoint", "/dst_endpoint", "/auth_protocol"],
    );
    let unmapped = text(&rows, "unmapped").expect("unmapped");
    assert!(unmapped.contains("correlation_uid"), "{unmapped}");

    // A failed login that says only that it failed: no code is made up, and the row says so.
    let mut failed = login.clone();
    failed["status_id"] = json!(2);
    let rows = row(&failed);
    assert_eq!(result(&rows), None);
    assert!(
        text(&rows, "decode_note").is_some_and(|n| n.contains("status_id 2")),
        "{:?}",
        text(&rows, "decode_note")
    );
}

#[test]
fn api_activity_6003_is_an_auth_check_with_the_response_code_as_result() {
    let (src, dst) = endpoints();
    let denied = json!({
        "activity_id": 2, "category_uid": 6, "class_uid": 6003, "time": 1_761_976_801_000_i64,
        "severity_id": 1, "type_uid": 600302, "metadata": metadata(),
        "actor": {"user": {"type_id": 1, "name": "orders.app", "groups": [{"name": "orders.read"}]}},
        "src_endpoint": src, "dst_endpoint": dst,
        "api": {
            "operation": "find",
            "request": {"data": {"find": "customers", "filter": {"tier": "gold"}, "$db": "orders"}},
            "response": {"code": 13, "error": "Unauthorized"},
        },
    });
    let rows = row(&denied);
    assert_eq!(text(&rows, "atype").as_deref(), Some("authCheck"));
    assert_eq!(
        result(&rows),
        Some(13),
        "Unauthorized, as in the mongo schema"
    );
    assert_eq!(text(&rows, "command").as_deref(), Some("find"));
    assert_eq!(text(&rows, "roles").as_deref(), Some("read@orders"));
    let param: Value = serde_json::from_str(&text(&rows, "param").expect("param")).expect("json");
    assert_eq!(param, denied["api"]["request"]["data"]);
    nothing_lost(
        &denied,
        &rows,
        &[
            "/time",
            "/src_endpoint",
            "/dst_endpoint",
            "/api/request/data",
            "/api/response/code",
            "/api/operation",
        ],
    );
    let unmapped = text(&rows, "unmapped").expect("unmapped");
    assert!(unmapped.contains(r#""error":"Unauthorized""#), "{unmapped}");
}

#[test]
fn entity_management_3004_and_others_keep_their_operation_and_every_field() {
    let (src, dst) = endpoints();
    let create = json!({
        "activity_id": 1, "category_uid": 3, "class_uid": 3004, "time": 1_761_976_802_000_i64,
        "severity_id": 1, "type_uid": 300401, "metadata": metadata(),
        "actor": {"user": {"type_id": 1, "name": "admin.dba", "groups": [{"name": "admin.root"}]}},
        "src_endpoint": src.clone(), "dst_endpoint": dst.clone(),
        "api": {"operation": "createCollection", "request": {"data": {"ns": "orders.invoices"}}},
        "entity": {"name": "orders.invoices", "type": "collection"},
    });
    let rows = row(&create);
    assert_eq!(text(&rows, "atype").as_deref(), Some("createCollection"));
    assert_eq!(text(&rows, "ns").as_deref(), Some("orders.invoices"));
    nothing_lost(
        &create,
        &rows,
        &[
            "/time",
            "/src_endpoint",
            "/dst_endpoint",
            "/api/request/data",
        ],
    );

    // A client's metadata (network activity 4001), its application and driver, behind a
    // load balancer: the intermediate address is kept.
    let hello = json!({
        "activity_id": 1, "category_uid": 4, "class_uid": 4001, "time": 1_761_976_803_000_i64,
        "severity_id": 1, "type_uid": 400101, "metadata": metadata(),
        "src_endpoint": {"ip": "203.0.113.7", "port": 51234, "intermediate_ips": [{"ip": "10.0.9.9", "port": 27016}]},
        "dst_endpoint": dst.clone(),
        "unmapped": {"param": {"clientMetadata": {"application": {"name": "billing"}, "driver": {"name": "pymongo", "version": "4.8.0"}}}},
    });
    let rows = row(&hello);
    assert_eq!(text(&rows, "atype").as_deref(), Some("clientMetadata"));
    assert_eq!(text(&rows, "app_name").as_deref(), Some("billing"));
    assert_eq!(text(&rows, "driver").as_deref(), Some("pymongo 4.8.0"));
    assert_eq!(text(&rows, "remote_ip").as_deref(), Some("203.0.113.7"));
    nothing_lost(
        &hello,
        &rows,
        &["/time", "/dst_endpoint", "/unmapped/param"],
    );

    // A server message (process activity 1007) with MongoDB's own `unmapped`.
    let message = json!({
        "activity_id": 99, "category_uid": 1, "class_uid": 1007, "time": 1_761_976_804_000_i64,
        "severity_id": 1, "type_uid": 100799, "metadata": metadata(),
        "unmapped": {"atype": "applicationMessage", "param": {"msg": "rotation done"}, "result": 0},
        "message": "rotation done",
    });
    let rows = row(&message);
    assert_eq!(text(&rows, "atype").as_deref(), Some("applicationMessage"));
    assert_eq!(result(&rows), Some(0));
    nothing_lost(
        &message,
        &rows,
        &[
            "/time",
            "/unmapped/param",
            "/unmapped/atype",
            "/unmapped/result",
        ],
    );
}
