//! The records of the sample: CloudTrail events and Atlas audit lines, each built from what the
//! story says happened.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde_json::{Value, json};

use super::{ACCOUNT, AuditLine, CtEvent, Generator, MONGO_ROLE, REGION, ts};

/// Where Atlas sends the `GetCallerIdentity` of a MONGODB-AWS login from.
const ATLAS_STS_CALLER_IP: &str = "192.0.2.44";

impl Generator {
    pub(super) fn id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    pub(super) fn key_id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let tail: String = (0..16)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        format!("{prefix}{tail}")
    }

    pub(super) fn at(&mut self, minute: i64) -> DateTime<Utc> {
        self.day
            + Duration::minutes(minute)
            + Duration::milliseconds(self.rng.random_range(0..59_000))
    }

    pub(super) fn conn_uuid(&mut self) -> Value {
        use base64::Engine as _;
        let bytes: [u8; 16] = self.rng.random();
        json!({"$binary": base64::engine::general_purpose::STANDARD.encode(bytes), "$type": "04"})
    }

    pub(super) fn push_audit(&mut self, host: usize, time: DateTime<Utc>, mut message: Value) {
        let date = time.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string();
        message["ts"] = json!({"$date": date});
        self.audit.push(AuditLine {
            host,
            time,
            line: message.to_string(),
        });
        self.manifest.mongodb_audit_rows += 1;
    }

    pub(super) fn push_ct(&mut self, account: &'static str, time: DateTime<Utc>, record: Value) {
        self.ct.push(CtEvent {
            account,
            time,
            delay_minutes: 0,
            record,
        });
        self.manifest.cloudtrail_rows += 1;
    }

    pub(super) fn assume_role(
        &mut self,
        time: DateTime<Utc>,
        identity: Value,
        source_ip: &str,
        agent: &str,
        session: &str,
        recipient: &str,
    ) -> Value {
        let key = self.key_id("ASIA");
        let role_id = self.key_id("AROA");
        let expiration = (time + Duration::hours(1))
            .format("%b %-d, %Y %-I:%M:%S %p")
            .to_string();
        json!({
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": ts(time),
            "eventSource": "sts.amazonaws.com",
            "eventName": "AssumeRole",
            "awsRegion": REGION,
            "sourceIPAddress": source_ip,
            "userAgent": agent,
            "requestParameters": {"roleArn": MONGO_ROLE, "roleSessionName": session, "durationSeconds": 3600},
            "responseElements": {
                "credentials": {"accessKeyId": key, "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQD", "expiration": expiration},
                "assumedRoleUser": {"assumedRoleId": format!("{role_id}:{session}"), "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/mongo-atlas-access/{session}")}
            },
            "requestID": self.id(),
            "eventID": self.id(),
            "readOnly": true,
            "resources": [{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": MONGO_ROLE}],
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": recipient,
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "sts.us-east-1.amazonaws.com"}
        })
    }

    pub(super) fn role_session(
        &mut self,
        account: &str,
        role_path: &str,
        role_name: &str,
        session: &str,
        time: DateTime<Utc>,
    ) -> Value {
        let principal = self.key_id("AROA");
        json!({
            "type": "AssumedRole",
            "principalId": format!("{principal}:{session}"),
            "arn": format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
            "accountId": account,
            "accessKeyId": self.key_id("ASIA"),
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": principal, "arn": format!("arn:aws:iam::{account}:role/{role_path}{role_name}"), "accountId": account, "userName": role_name},
                "attributes": {"creationDate": ts(time - Duration::minutes(3)), "mfaAuthenticated": "false"}
            }
        })
    }

    /// One database connection: authenticate, client metadata, some commands, logout.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn db_session(
        &mut self,
        host: usize,
        start: DateTime<Utc>,
        user: &str,
        db: &str,
        mechanism: &str,
        ip: &str,
        app: &str,
        commands: usize,
    ) {
        let uuid = self.conn_uuid();
        let port: u16 = self.rng.random_range(32768..61000);
        let local = json!({"ip": "192.168.248.2", "port": 27017});
        let remote = json!({"ip": ip, "port": port});
        let users = json!([{"user": user, "db": db}]);
        let roles = json!([{"role": "readWrite", "db": "orders"}]);
        let mut t = start;
        self.push_audit(host, t, json!({"atype": "authenticate", "ts": null, "uuid": uuid, "local": local, "remote": remote,
            "users": users, "roles": roles, "param": {"user": user, "db": db, "mechanism": mechanism}, "result": 0}));
        t += Duration::milliseconds(15);
        self.push_audit(host, t, json!({"atype": "clientMetadata", "ts": null, "uuid": uuid, "local": local, "remote": remote,
            "users": users, "roles": roles, "param": {"localEndpoint": local, "clientMetadata": {
                "driver": {"name": "nodejs", "version": "6.10.0"}, "os": {"type": "Linux", "architecture": "x64"},
                "platform": "Node.js v20.18.0, LE", "application": {"name": app}}}, "result": 0}));
        for _ in 0..commands {
            t += Duration::milliseconds(self.rng.random_range(5..400));
            let command = ["find", "insert", "update", "aggregate"][self.rng.random_range(0..4)];
            self.push_audit(host, t, json!({"atype": "authCheck", "ts": null, "uuid": uuid, "local": local, "remote": remote,
                "users": users, "roles": roles, "param": {"command": command, "ns": "orders.orders", "args": {
                    command: "orders", "$db": "orders", "lsid": {"id": {"$uuid": "0b9d2a4c-3f0e-4c8e-9b7a-2f0d9e6c1a11"}},
                    "$clusterTime": {"clusterTime": {"$timestamp": {"t": start.timestamp(), "i": 1}}}}}, "result": 0}));
        }
        t += Duration::milliseconds(50);
        self.push_audit(host, t, json!({"atype": "logout", "ts": null, "uuid": uuid, "local": local, "remote": remote,
            "users": [], "roles": [], "param": {"reason": "Client has disconnected", "initialUsers": users, "updatedUsers": []}, "result": 0}));
    }

    /// The `GetCallerIdentity` that Atlas sends to STS with a MONGODB-AWS client's signature:
    /// recorded in the role's account, under the session's temporary `key`.
    pub(super) fn caller_identity_check(
        &mut self,
        time: DateTime<Utc>,
        session: &str,
        key: &str,
        assumed: DateTime<Utc>,
    ) -> Value {
        let mut identity = self.role_session(
            ACCOUNT,
            "",
            "mongo-atlas-access",
            session,
            assumed + Duration::minutes(3),
        );
        identity["accessKeyId"] = json!(key);
        json!({
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": ts(time),
            "eventSource": "sts.amazonaws.com",
            "eventName": "GetCallerIdentity",
            "awsRegion": REGION,
            "sourceIPAddress": ATLAS_STS_CALLER_IP,
            "userAgent": "MongoDB Atlas MONGODB-AWS authentication",
            "requestParameters": null,
            "responseElements": null,
            "requestID": self.id(),
            "eventID": self.id(),
            "readOnly": true,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "sts.us-east-1.amazonaws.com"}
        })
    }

    /// An IAM call that sets a role's trust policy (`CreateRole` or `UpdateAssumeRolePolicy`),
    /// by the platform team, with the policy URL-encoded as CloudTrail records it.
    pub(super) fn trust_policy_event(
        &mut self,
        time: DateTime<Utc>,
        event_name: &str,
        role_name: &str,
        policy: &Value,
    ) -> Value {
        let encoded: String =
            form_urlencoded::byte_serialize(policy.to_string().as_bytes()).collect();
        let identity = self.role_session(ACCOUNT, "", "platform-ops", "ops", time);
        let (request, response) = if event_name == "CreateRole" {
            let role_id = self.key_id("AROA");
            (
                json!({"path": "/", "roleName": role_name, "assumeRolePolicyDocument": encoded,
                    "description": "Read-only access to the orders cluster"}),
                json!({"role": {"path": "/", "roleName": role_name, "roleId": role_id,
                    "arn": format!("arn:aws:iam::{ACCOUNT}:role/{role_name}"),
                    "createDate": time.format("%b %-d, %Y %-I:%M:%S %p").to_string(),
                    "assumeRolePolicyDocument": encoded}}),
            )
        } else {
            (
                json!({"roleName": role_name, "policyDocument": encoded}),
                Value::Null,
            )
        };
        json!({
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": ts(time),
            "eventSource": "iam.amazonaws.com",
            "eventName": event_name,
            "awsRegion": REGION,
            "sourceIPAddress": "10.20.7.44",
            "userAgent": "aws-cli/2.22.4 md/command#iam",
            "requestParameters": request,
            "responseElements": response,
            "requestID": self.id(),
            "eventID": self.id(),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management"
        })
    }
}

/// The temporary key an `AssumeRole` record issued.
pub(super) fn issued_key(record: &Value) -> String {
    record["responseElements"]["credentials"]["accessKeyId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A trust policy letting each of `principals` (`AWS` principals) assume the role; a
/// principal given with an external id must pass it.
pub(super) fn trust_policy(principals: &[(&str, Option<&str>)]) -> Value {
    let statements: Vec<Value> = principals
        .iter()
        .map(|(principal, external_id)| {
            let mut statement = json!({"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"});
            if let Some(id) = external_id {
                statement["Condition"] = json!({"StringEquals": {"sts:ExternalId": id}});
            }
            statement
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}
