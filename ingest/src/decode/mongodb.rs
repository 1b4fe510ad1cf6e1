//! MongoDB audit messages into `mongodb_audit` rows.
//!
//! Two schemas land in the one table: the classic `mongo` schema (`atype`, `ts`, `users`, `param`,
//! ...) and MongoDB 8's OCSF schema (`class_uid`, `time`, `actor`, `src_endpoint`, ...); the
//! `audit_schema` column says which, and the columns mean the same for both (see
//! [`append_ocsf`]). Each message is read straight from simd-json's tape. Extended JSON is read where MongoDB writes it (`$date`,
//! `$numberLong`, `$binary`). Where an IP address belongs but the text is not one, the typed
//! `*_ip` column stays null and `*_ip_text` keeps the text. Unknown top-level fields go to
//! `unmapped`.
//!
//! `param` (often the largest part of a message) is stored as written when it can be: when the
//! line had no escape, simd-json left it as read, and when the object follows `"param":` and is
//! followed by the next key or the message's end with nothing between, the row takes its bytes
//! ([`ParamInLine`]) instead of writing the parsed object out again. Other lines (spaces around
//! the object, an escape anywhere) and the OCSF schema, where it is nested, have it written out
//! as compact JSON.

use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range;

use base64::Engine as _;
use simd_json::prelude::*;
use simd_json::tape::Value;

use auditlake_schema as schema;

use super::ObjectContext;
use super::columns::{SameInEveryRow, TableBuilder, table_columns};
use super::tape::{
    self, boolean, fields, get, integer, path, text, utf8, write_json, write_object, write_pruned,
};
use super::time::{from_epoch_millis, parse_text};

table_columns! {
    pub enum Col {
        ts, atype, result, user, user_db, users, roles, mechanism, remote_ip, remote_ip_text,
        remote_port, local_ip, local_ip_text, local_port, is_system_user, conn_uuid, ns, command,
        param, app_name, driver, audit_schema, project, cluster, hostname, log_type, unmapped,
        source_uri, source_index, ingested_at, decode_note,
    }
}

const MONGO_FIELDS: &[&str] = &[
    "atype", "ts", "uuid", "local", "remote", "users", "roles", "param", "result",
];
/// A new builder for the `mongodb_audit` rows of the object `ctx` describes.
pub fn builder(ctx: &ObjectContext<'_>) -> TableBuilder {
    let schema = schema::file_schema(schema::MONGODB_AUDIT).expect("mongodb_audit schema");
    let mut rows = TableBuilder::new(schema::MONGODB_AUDIT, schema, Col::NAMES);
    let atlas = ctx.atlas.as_ref();
    for (col, text) in [
        (Col::project, atlas.and_then(|a| a.project.as_deref())),
        (Col::cluster, atlas.map(|a| a.cluster.as_str())),
        (Col::hostname, atlas.map(|a| a.hostname.as_str())),
        (Col::log_type, atlas.map(|a| a.log_type.as_str())),
    ] {
        rows.same_in_every_row(col, SameInEveryRow::Text(text));
    }
    rows.same_in_every_row(Col::source_uri, SameInEveryRow::Text(Some(ctx.source_uri)));
    rows.same_in_every_row(
        Col::ingested_at,
        SameInEveryRow::Timestamp(Some(ctx.ingested_at_micros)),
    );
    rows
}

/// Which audit schema a message is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditSchema {
    Mongo,
    Ocsf,
}

/// The schema of a message, or why it is not an audit message.
pub fn classify(message: Value<'_, '_>) -> Result<AuditSchema, &'static str> {
    if message.as_object().is_none() {
        return Err("a MongoDB audit message must be a JSON object");
    }
    if message.contains_key("atype") {
        Ok(AuditSchema::Mongo)
    } else if message.contains_key("class_uid") || message.contains_key("type_uid") {
        Ok(AuditSchema::Ocsf)
    } else {
        Err("not a MongoDB audit message: no atype (mongo schema) or class_uid (OCSF schema)")
    }
}

/// An endpoint as the typed IP, the text as written, the port and the system-user flag.
#[derive(Debug, Default)]
struct Endpoint<'i> {
    ip: Option<Cow<'i, str>>,
    text: Option<Cow<'i, str>>,
    port: Option<i32>,
    system_user: Option<bool>,
}

fn endpoint<'i>(value: Option<Value<'_, 'i>>) -> Endpoint<'i> {
    let [ip, unix, port, system_user] = fields(value, ["ip", "unix", "port", "isSystemUser"]);
    let text_ip = text(ip);
    let unix = text(unix).map(|path| Cow::Owned(format!("unix:{path}")));
    // An IPv4 address that parses is already in canonical form; IPv6 is rewritten canonically.
    let ip = text_ip.as_ref().and_then(|t| match t.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => Some(t.clone()),
        Ok(ip) => Some(Cow::Owned(ip.to_string())),
        Err(_) => None,
    });
    Endpoint {
        ip,
        text: text_ip.or(unix),
        port: integer(port).and_then(|p| i32::try_from(p).ok()),
        system_user: boolean(system_user),
    }
}

/// `name@db` (or `name` without a `db`) for each `{<name_key>: .., db: ..}` in a list, as the
/// parts of one text item each.
fn qualified_names<'t, 'i>(
    list: Option<Value<'t, 'i>>,
    name_key: &'static str,
) -> impl Iterator<Item = [Cow<'i, str>; 3]> + 't
where
    'i: 't,
{
    list.and_then(|l| l.as_array())
        .map(|items| items.iter())
        .into_iter()
        .flatten()
        .filter_map(move |item| {
            let [name, db] = fields(Some(item), [name_key, "db"]);
            let name = text(name)?;
            Some(match text(db) {
                Some(db) => [name, Cow::Borrowed("@"), db],
                None => [name, Cow::Borrowed(""), Cow::Borrowed("")],
            })
        })
}

/// Room for a hyphenated UUID.
type UuidText = [u8; uuid::fmt::Hyphenated::LENGTH];

/// The connection UUID from legacy `{$binary, $type}`, canonical `{$binary:{base64, subType}}`,
/// `{$uuid}`, or plain text; a binary UUID is written into `buf`.
fn connection_uuid<'b, 'i: 'b>(
    value: Option<Value<'_, 'i>>,
    buf: &'b mut UuidText,
) -> Option<Cow<'b, str>> {
    let value = value?;
    if let Some(s) = value.into_string() {
        return Some(Cow::Borrowed(s));
    }
    if let Some(s) = text(get(Some(value), "$uuid")) {
        return Some(s);
    }
    let binary = get(Some(value), "$binary")?;
    let base64 = text(Some(binary)).or_else(|| text(get(Some(binary), "base64")))?;
    let mut bytes = [0u8; 64];
    let decoded = base64::engine::general_purpose::STANDARD
        .decode_slice(base64.as_bytes(), &mut bytes)
        .ok()?;
    match uuid::Uuid::from_slice(&bytes[..decoded]) {
        Ok(id) => Some(Cow::Borrowed(id.hyphenated().encode_lower(buf))),
        Err(_) => Some(base64),
    }
}

/// `ts` as MongoDB writes it: `{$date: "<ISO-8601>"}`, `{$date: {$numberLong: "<ms>"}}`,
/// `{$date: <ms>}`, or a bare string.
fn mongo_ts(value: Option<Value<'_, '_>>, notes: &mut Vec<String>) -> Option<i64> {
    let date = get(value, "$date").or(value);
    let millis = get(date, "$numberLong").or(date);
    match millis.and_then(|m| m.into_string()) {
        Some(s) if get(date, "$numberLong").is_some() => {
            s.parse::<i64>().ok().and_then(from_epoch_millis)
        }
        Some(s) => {
            let t = parse_text("ts", s);
            notes.extend(t.note);
            t.micros
        }
        None => match millis {
            Some(v) => match integer(Some(v)) {
                Some(ms) => from_epoch_millis(ms),
                None => {
                    notes.push("ts missing or not a time; left null".to_owned());
                    None
                }
            },
            None => {
                notes.push("ts missing; left null".to_owned());
                None
            }
        },
    }
}

/// The application name and driver (`name version`) from `param.clientMetadata`.
fn client_app<'i>(metadata: Option<Value<'_, 'i>>) -> (Option<Cow<'i, str>>, Option<String>) {
    let app = text(get(get(metadata, "application"), "name"));
    let driver = get(metadata, "driver");
    let driver = match (text(get(driver, "name")), text(get(driver, "version"))) {
        (Some(name), Some(version)) => Some(format!("{name} {version}")),
        (Some(name), None) => Some(name.into_owned()),
        _ => None,
    };
    (app, driver)
}

/// Writes the top-level fields not in `known` as a JSON object into `out`; `false` if none.
fn unmapped_fields(message: Value<'_, '_>, known: &[&str], out: &mut Vec<u8>) -> bool {
    match message.as_object() {
        Some(object) => write_object(object.iter().filter(|(k, _)| !known.contains(k)), out),
        None => false,
    }
}

/// The line a message is parsed from, left as read by the parser (it has no escape): its
/// address and length.
#[derive(Debug, Clone, Copy)]
pub struct IntactLine {
    address: usize,
    len: usize,
}

impl IntactLine {
    /// The span of `line`, to be taken before it is parsed; only for a line without a backslash
    /// (the only lines simd-json leaves as they were).
    pub fn of(line: &[u8]) -> Self {
        IntactLine {
            address: line.as_ptr() as usize,
            len: line.len(),
        }
    }
}

/// A row whose `param` is to be taken from its line once the parse is over: the offsets of
/// the value as written, if the line is compact around it.
#[must_use = "the row ends once its param is set"]
#[derive(Debug)]
pub struct ParamInLine {
    value: Range<usize>,
    /// Whether another key follows `param` in the message.
    followed: bool,
}

impl ParamInLine {
    /// Where `param` would sit in `line` if written compactly: from just after `":` to just
    /// before `,"` of the next key, or the message's closing brace; `None` if the addresses fall
    /// outside the line.
    fn locate(line: IntactLine, key_end: usize, next_key: Option<usize>) -> Option<Self> {
        let offset = |address: usize| address.checked_sub(line.address).filter(|o| *o <= line.len);
        let start = offset(key_end)? + 2;
        let end = match next_key {
            Some(next) => offset(next)?.checked_sub(2)?,
            None => line.len.checked_sub(1)?,
        };
        (start < end).then_some(ParamInLine {
            value: start..end,
            followed: next_key.is_some(),
        })
    }

    /// Sets `param` from `line` (the bytes the message was parsed from, as read) and ends the
    /// row. The bytes are taken only when they are exactly the object: `"param":{...}` then
    /// `,"` or the closing brace; otherwise the line is parsed again and the object written.
    pub fn finish(self, rows: &mut TableBuilder, line: &mut [u8], scratch: &mut Vec<u8>) {
        let (start, end) = (self.value.start, self.value.end);
        let as_written = line.get(start - 2..start) == Some(b"\":".as_slice())
            && line.get(start) == Some(&b'{')
            && line.get(end - 1) == Some(&b'}')
            && if self.followed {
                line.get(end..end + 2) == Some(b",\"".as_slice())
            } else {
                line.get(end..) == Some(b"}".as_slice())
            };
        if as_written {
            rows.str(Col::param, utf8(&line[start..end]));
        } else {
            let written = tape::with_parsed(line, |message| {
                write_json(get(Some(message), "param"), scratch)
            });
            if written.unwrap_or(false) {
                rows.str(Col::param, utf8(scratch));
            }
        }
        rows.end_row();
    }
}

/// Appends one audit message (classified with [`classify`] first) as a row; `scratch` is
/// reused for the JSON text columns. With `line` (the message's line was left as read),
/// `param` may be left to take from the line once the parse is over: the row then ends with
/// [`ParamInLine::finish`].
pub fn append(
    rows: &mut TableBuilder,
    message: Value<'_, '_>,
    schema: AuditSchema,
    index: i64,
    scratch: &mut Vec<u8>,
    line: Option<IntactLine>,
) -> Option<ParamInLine> {
    let param_in_line = match schema {
        AuditSchema::Mongo => append_mongo(rows, message, scratch, line),
        AuditSchema::Ocsf => {
            append_ocsf(rows, message, scratch);
            None
        }
    };
    rows.i64(Col::source_index, Some(index));
    if param_in_line.is_none() {
        rows.end_row();
    }
    param_in_line
}

fn set_endpoints(rows: &mut TableBuilder, remote: &Endpoint<'_>, local: &Endpoint<'_>) {
    rows.str(Col::remote_ip, remote.ip.as_deref());
    rows.str(Col::remote_ip_text, remote.text.as_deref());
    rows.i32(Col::remote_port, remote.port);
    rows.str(Col::local_ip, local.ip.as_deref());
    rows.str(Col::local_ip_text, local.text.as_deref());
    rows.i32(Col::local_port, local.port);
}

/// The top-level fields of a `mongo`-schema message, found in one pass over its keys.
#[derive(Default, Clone, Copy)]
struct MongoFields<'t, 'i> {
    atype: Option<Value<'t, 'i>>,
    ts: Option<Value<'t, 'i>>,
    uuid: Option<Value<'t, 'i>>,
    local: Option<Value<'t, 'i>>,
    remote: Option<Value<'t, 'i>>,
    users: Option<Value<'t, 'i>>,
    roles: Option<Value<'t, 'i>>,
    param: Option<Value<'t, 'i>>,
    result: Option<Value<'t, 'i>>,
    /// Whether some top-level key has no column of its own.
    has_unmapped: bool,
    /// Where `param`'s value sits, by the addresses of its key's end and of the next key.
    param_place: Option<(usize, Option<usize>)>,
}

impl<'t, 'i> MongoFields<'t, 'i> {
    fn read(message: Value<'t, 'i>) -> Self {
        let mut f = MongoFields::default();
        let Some(object) = message.as_object() else {
            return f;
        };
        for (key, value) in object.iter() {
            if let Some((_, next @ None)) = &mut f.param_place {
                // The key's text starts one byte after its opening quote.
                *next = Some(key.as_ptr() as usize);
            }
            let slot = match key {
                "atype" => &mut f.atype,
                "ts" => &mut f.ts,
                "uuid" => &mut f.uuid,
                "local" => &mut f.local,
                "remote" => &mut f.remote,
                "users" => &mut f.users,
                "roles" => &mut f.roles,
                "param" => {
                    f.param_place = Some((key.as_ptr() as usize + key.len(), None));
                    &mut f.param
                }
                "result" => &mut f.result,
                _ => {
                    f.has_unmapped = true;
                    continue;
                }
            };
            // A repeated key: the last one wins, as in every JSON object reader.
            *slot = Some(value);
        }
        f
    }
}

/// The keys of `param` that have columns of their own.
const PARAM_FIELDS: [&str; 6] = ["user", "db", "mechanism", "ns", "command", "clientMetadata"];

fn append_mongo(
    rows: &mut TableBuilder,
    message: Value<'_, '_>,
    scratch: &mut Vec<u8>,
    line: Option<IntactLine>,
) -> Option<ParamInLine> {
    let f = MongoFields::read(message);
    let mut notes = Vec::new();
    let ts = mongo_ts(f.ts, &mut notes);
    let atype = text(f.atype);
    let param = f.param;
    let [p_user, p_db, mechanism, ns, command, client_metadata] = fields(param, PARAM_FIELDS);
    let first_user = f.users.and_then(|u| u.as_array()).and_then(|u| u.get(0));
    // A failed authenticate has no `users`: the user it tried is in `param`.
    let (user, user_db) = match first_user {
        Some(u) => (text(get(Some(u), "user")), text(get(Some(u), "db"))),
        None if atype.as_deref() == Some("authenticate") => (text(p_user), text(p_db)),
        None => (None, None),
    };
    let remote = endpoint(f.remote);
    let local = endpoint(f.local);
    let (app, driver) = client_app(client_metadata);
    let ns = text(ns).or_else(|| text(p_db));

    rows.timestamp(Col::ts, ts);
    rows.str(Col::atype, atype.as_deref());
    rows.i32(
        Col::result,
        integer(f.result).and_then(|r| i32::try_from(r).ok()),
    );
    rows.str(Col::user, user.as_deref());
    rows.str(Col::user_db, user_db.as_deref());
    rows.str_list_joined(Col::users, qualified_names(f.users, "user"));
    rows.str_list_joined(Col::roles, qualified_names(f.roles, "role"));
    rows.str(Col::mechanism, text(mechanism).as_deref());
    set_endpoints(rows, &remote, &local);
    rows.bool(
        Col::is_system_user,
        local.system_user.or(remote.system_user),
    );
    let mut uuid_text: UuidText = [0; uuid::fmt::Hyphenated::LENGTH];
    rows.str(
        Col::conn_uuid,
        connection_uuid(f.uuid, &mut uuid_text).as_deref(),
    );
    rows.str(Col::ns, ns.as_deref());
    rows.str(Col::command, text(command).as_deref());
    let param_in_line = match (line, f.param_place, param.and_then(|p| p.as_object())) {
        (Some(line), Some((key_end, next_key)), Some(_)) => {
            ParamInLine::locate(line, key_end, next_key)
        }
        _ => None,
    };
    if param_in_line.is_none() && write_json(param, scratch) {
        rows.str(Col::param, utf8(scratch));
    }
    rows.str(Col::app_name, app.as_deref());
    rows.str(Col::driver, driver.as_deref());
    rows.str(Col::audit_schema, Some("mongo"));
    if f.has_unmapped && unmapped_fields(message, MONGO_FIELDS, scratch) {
        rows.str(Col::unmapped, utf8(scratch));
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    rows.str(Col::decode_note, note.as_deref());
    param_in_line
}

/// The `mongo`-schema action of an OCSF message, from its class (and activity) where that
/// names one action (see MongoDB's OCSF type mapping): an API activity (6003) is an
/// authorization check, an authentication (3002) a login (activity 1) or a logout (2), a
/// network activity opened (4001, 1) a client's metadata. Other classes hold several actions,
/// told apart by `api.operation`.
fn ocsf_action(class: Option<i64>, activity: Option<i64>) -> Option<&'static str> {
    match (class?, activity) {
        (6003, _) => Some("authCheck"),
        (3002, Some(1)) => Some("authenticate"),
        (3002, Some(2)) => Some("logout"),
        (4001, Some(1)) => Some("clientMetadata"),
        _ => None,
    }
}

/// An endpoint whose every field has a column (its address and port).
fn endpoint_is_plain(value: Option<Value<'_, '_>>) -> bool {
    value.and_then(|v| v.as_object()).is_some_and(|o| {
        o.iter()
            .all(|(k, _)| matches!(k, "ip" | "port" | "isSystemUser"))
    })
}

/// `role@db` for each OCSF group: `{name: "<db>.<role>"}` as MongoDB writes it, or a group
/// with a `db` of its own; as the parts of one text item each.
fn ocsf_roles<'t, 'i>(groups: Option<Value<'t, 'i>>) -> Vec<[Cow<'i, str>; 3]>
where
    'i: 't,
{
    qualified_names(groups, "name")
        .map(|[name, at, db]| {
            if !at.is_empty() {
                return [name, at, db];
            }
            match name.split_once('.') {
                Some((db, role)) => [
                    Cow::Owned(role.to_owned()),
                    Cow::Borrowed("@"),
                    Cow::Owned(db.to_owned()),
                ],
                None => [name, at, db],
            }
        })
        .collect()
}

/// An OCSF message as a row. Its fields that have a column go there (`time`, the actor, the
/// endpoints, `auth_protocol`, the request's data as `param`, the response code as `result`);
/// everything else (`metadata`, `api`'s other fields, the class and type ids, ...) stays in
/// `unmapped` at its path, so no field is lost. Users and roles are written `name@db`, and
/// `atype` and `result` mean what they mean in the `mongo` schema.
fn append_ocsf(rows: &mut TableBuilder, m: Value<'_, '_>, scratch: &mut Vec<u8>) {
    let mut notes = Vec::new();
    let ts = match integer(path(m, &["time"])) {
        Some(ms) => from_epoch_millis(ms),
        None => {
            notes.push("time missing or not epoch milliseconds; left null".to_owned());
            None
        }
    };
    // Fields written to a column, not to `unmapped`.
    let mut in_columns: Vec<&[&str]> = Vec::new();
    in_columns.push(&["time"]);
    in_columns.push(&["auth_protocol"]);
    let class = integer(get(Some(m), "class_uid"));
    let activity = integer(get(Some(m), "activity_id"));
    let inner = get(Some(m), "unmapped");
    let operation = text(path(m, &["api", "operation"]));
    let atype = match text(get(inner, "atype")) {
        Some(atype) => {
            in_columns.push(&["unmapped", "atype"]);
            Some(atype)
        }
        None => ocsf_action(class, activity)
            .map(Cow::Borrowed)
            .or_else(|| operation.clone())
            .or_else(|| text(get(Some(m), "type_uid")).map(|t| Cow::Owned(format!("ocsf:{t}")))),
    };
    // OCSF names the actor `db.user`; the database never contains a dot, the user may.
    let actor = text(path(m, &["actor", "user", "name"]));
    let (user_db, user) = match actor.as_deref().and_then(|a| a.split_once('.')) {
        Some((db, user)) => (Some(db.to_owned()), Some(user.to_owned())),
        None => (None, actor.as_deref().map(str::to_owned)),
    };
    let roles = ocsf_roles(path(m, &["actor", "user", "groups"]));
    let (src, dst) = (get(Some(m), "src_endpoint"), get(Some(m), "dst_endpoint"));
    if endpoint_is_plain(src) {
        in_columns.push(&["src_endpoint"]);
    }
    if endpoint_is_plain(dst) {
        in_columns.push(&["dst_endpoint"]);
    }
    let (remote, local) = (endpoint(src), endpoint(dst));
    let param = match get(inner, "param") {
        Some(param) => {
            in_columns.push(&["unmapped", "param"]);
            Some(param)
        }
        None => {
            let data = path(m, &["api", "request", "data"]);
            if data.is_some() {
                in_columns.push(&["api", "request", "data"]);
            }
            data
        }
    };
    let [_, _, _, ns, command, client_metadata] = fields(param, PARAM_FIELDS);
    let (app, driver) = client_app(client_metadata);
    // An authorization check's operation is the command it checked.
    let command = text(command).or_else(|| {
        let checked = (class == Some(6003)).then(|| operation.clone()).flatten();
        if checked.is_some() {
            in_columns.push(&["api", "operation"]);
        }
        checked
    });
    let code = |value: Option<Value<'_, '_>>| {
        integer(value)
            .or_else(|| text(value).and_then(|t| t.parse().ok()))
            .and_then(|r| i32::try_from(r).ok())
    };
    let result = if let Some(r) = code(get(inner, "result")) {
        in_columns.push(&["unmapped", "result"]);
        Some(r)
    } else if let Some(r) = code(path(m, &["api", "response", "code"])) {
        in_columns.push(&["api", "response", "code"]);
        Some(r)
    } else if let Some(r) = code(get(Some(m), "status_code")) {
        in_columns.push(&["status_code"]);
        Some(r)
    } else {
        match integer(get(Some(m), "status_id")) {
            // OCSF's Success: the code the mongo schema gives success.
            Some(1) => Some(0),
            Some(status) => {
                notes.push(format!(
                    "status_id {status} without a result code; result left null"
                ));
                None
            }
            None => None,
        }
    };

    rows.timestamp(Col::ts, ts);
    rows.str(Col::atype, atype.as_deref());
    rows.i32(Col::result, result);
    rows.str(Col::user, user.as_deref());
    rows.str(Col::user_db, user_db.as_deref());
    let users = user.as_deref().map(|u| match &user_db {
        Some(db) => [u, "@", db.as_str()],
        None => [u, "", ""],
    });
    rows.str_list_joined(Col::users, users);
    rows.str_list_joined(Col::roles, roles);
    rows.str(Col::mechanism, text(path(m, &["auth_protocol"])).as_deref());
    set_endpoints(rows, &remote, &local);
    rows.bool(
        Col::is_system_user,
        local.system_user.or(remote.system_user),
    );
    rows.str(Col::ns, text(ns).as_deref());
    rows.str(Col::command, command.as_deref());
    if write_json(param, scratch) {
        rows.str(Col::param, utf8(scratch));
    }
    rows.str(Col::app_name, app.as_deref());
    rows.str(Col::driver, driver.as_deref());
    rows.str(Col::audit_schema, Some("ocsf"));
    scratch.clear();
    if write_pruned(m, &in_columns, scratch) {
        rows.str(Col::unmapped, utf8(scratch));
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    rows.str(Col::decode_note, note.as_deref());
}
