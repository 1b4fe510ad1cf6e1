//! The sample day: the story's events at their times, then background traffic around them.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde_json::{Value, json};

use super::records::{issued_key, trust_policy};
use super::{
    ACCOUNT, BURST_IP, CI_ACCOUNT, DENIED_USER, Generator, LAMBDA_ROLE, MONGO_ROLE, REGION,
    UNEXPECTED_USER, ts,
};

/// The account root of the CI account, as the trust policy names it.
const CI_ACCOUNT_ROOT: &str = "arn:aws:iam::444455556666:root";
/// The external id the CI account must pass.
const CI_EXTERNAL_ID: &str = "ci-7f3a";

/// A MONGODB-AWS login of a session of the database role.
struct AwsLogin<'a> {
    host: usize,
    at: DateTime<Utc>,
    session: &'a str,
    key: &'a str,
    assumed: DateTime<Utc>,
    ip: &'a str,
    app: &'a str,
    commands: usize,
}

impl Generator {
    /// A MONGODB-AWS login: the `GetCallerIdentity` Atlas sends to STS a moment before the
    /// `authenticate` it audits, then the connection.
    fn aws_login(&mut self, login: AwsLogin<'_>) {
        let check_at = login.at - Duration::milliseconds(self.rng.random_range(150..900));
        let record = self.caller_identity_check(check_at, login.session, login.key, login.assumed);
        self.push_ct(ACCOUNT, check_at, record);
        self.db_session(
            login.host,
            login.at,
            MONGO_ROLE,
            "$external",
            "MONGODB-AWS",
            login.ip,
            login.app,
            login.commands,
        );
        self.manifest.mongodb_aws_sessions += 1;
    }

    pub(super) fn story(&mut self) {
        self.trust_changes();
        // The Lambda, every five minutes.
        for slot in 0..288 {
            let time = self.at(slot * 5);
            let session = format!("orders-api-{slot:03}");
            let identity = self.role_session(
                ACCOUNT,
                "service-role/",
                "orders-api-lambda",
                "orders-api",
                time,
            );
            let record = self.assume_role(time, identity, "10.20.3.15", "aws-sdk-nodejs/3.693.0 ua/2.1 os/linux lang/js md/nodejs#20.18.0 exec-env/AWS_Lambda_nodejs20.x", &session, ACCOUNT);
            let key = issued_key(&record);
            self.push_ct(ACCOUNT, time, record);
            self.manifest.assume_role_by_lambda += 1;
            let commands = self.rng.random_range(1..5);
            self.aws_login(AwsLogin {
                host: slot as usize % 2,
                at: time + Duration::seconds(1),
                session: &session,
                key: &key,
                assumed: time,
                ip: "10.20.3.15",
                app: "orders-api",
                commands,
            });
        }
        // The CI deployer, across accounts: one event in each account's log, one sharedEventID.
        // The last run assumes the role and stops before connecting. Its minutes are off the
        // Lambda's five-minute beat, so that no login of the two falls within a second of the
        // other (the access chain would rightly call that ambiguous).
        for minute in [362, 632, 887, 1162, 1302] {
            let time = self.at(minute);
            let session = format!("ci-deploy-{minute}");
            let shared = self.id();
            let caller = self.role_session(CI_ACCOUNT, "", "ci-deployer", "gha-run", time);
            let mut caller_copy = self.assume_role(
                time,
                caller,
                "52.94.76.10",
                "aws-cli/2.22.4 md/command#sts.assume-role",
                &session,
                CI_ACCOUNT,
            );
            caller_copy["sharedEventID"] = json!(shared);
            caller_copy["requestParameters"]["externalId"] = json!(CI_EXTERNAL_ID);
            let key = issued_key(&caller_copy);
            self.push_ct(CI_ACCOUNT, time, caller_copy.clone());
            let mut owner_copy = caller_copy;
            let principal = self.key_id("AROA");
            owner_copy["userIdentity"] = json!({"type": "AWSAccount", "principalId": format!("{principal}:gha-run"), "accountId": CI_ACCOUNT});
            owner_copy["eventID"] = json!(self.id());
            owner_copy["recipientAccountId"] = json!(ACCOUNT);
            self.push_ct(ACCOUNT, time, owner_copy);
            self.manifest.assume_role_by_ci += 2;
            if minute == 1302 {
                self.manifest.assumptions_without_session += 1;
                continue;
            }
            self.aws_login(AwsLogin {
                host: 0,
                at: time + Duration::seconds(4),
                session: &session,
                key: &key,
                assumed: time,
                ip: "100.64.10.20",
                app: "migrations",
                commands: 3,
            });
        }
        // The unexpected principal.
        let time = self.day + Duration::minutes(14 * 60 + 12) + Duration::seconds(7);
        let identity = json!({"type": "IAMUser", "principalId": "AIDAEXAMPLEALICE0001", "arn": UNEXPECTED_USER,
            "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLEALICE0001", "userName": "alice"});
        let record = self.assume_role(
            time,
            identity,
            "198.51.100.23",
            "aws-cli/2.22.4 md/command#sts.assume-role",
            "alice-debug",
            ACCOUNT,
        );
        let alice_key = issued_key(&record);
        self.push_ct(ACCOUNT, time, record);
        self.manifest.assume_role_by_unexpected += 1;
        // Bob tries too, and is refused.
        let bob_time = self.day + Duration::minutes(9 * 60 + 41) + Duration::seconds(30);
        let bob = json!({"type": "IAMUser", "principalId": "AIDAEXAMPLEBOB000001", "arn": DENIED_USER,
            "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLEBOB000001", "userName": "bob"});
        let mut record = self.assume_role(
            bob_time,
            bob,
            "198.51.100.80",
            "aws-cli/2.22.4 md/command#sts.assume-role",
            "bob",
            ACCOUNT,
        );
        record["errorCode"] = json!("AccessDenied");
        record["errorMessage"] = json!(format!(
            "User: {DENIED_USER} is not authorized to perform: sts:AssumeRole on resource: {MONGO_ROLE}"
        ));
        if let Some(r) = record.as_object_mut() {
            r.remove("responseElements");
        }
        self.push_ct(ACCOUNT, bob_time, record);
        self.manifest.assume_role_denied += 1;
        self.aws_login(AwsLogin {
            host: 1,
            at: time + Duration::seconds(40),
            session: "alice-debug",
            key: &alice_key,
            assumed: time,
            ip: "198.51.100.23",
            app: "MongoDB Compass",
            commands: 6,
        });
        // A session of the role whose key no assumption in the trail issued.
        let unknown_key = self.key_id("ASIA");
        let at = self.day + Duration::minutes(21 * 60 + 7) + Duration::seconds(13);
        self.aws_login(AwsLogin {
            host: 0,
            at,
            session: "laptop",
            key: &unknown_key,
            assumed: at - Duration::minutes(20),
            ip: "203.0.113.50",
            app: "mongosh 2.3.1",
            commands: 5,
        });
        self.manifest.unattributed_sessions += 1;

        // Break-glass changes.
        let dba = json!([{"user": "dba-breakglass", "db": "admin"}]);
        let dba_roles = json!([{"role": "root", "db": "admin"}]);
        let local = json!({"ip": "192.168.248.2", "port": 27017});
        let remote = json!({"ip": "100.64.10.31", "port": 51544});
        let uuid = self.conn_uuid();
        let t = self.day + Duration::minutes(16 * 60 + 40);
        self.push_audit(0, t, json!({"atype": "authenticate", "ts": null, "uuid": uuid, "local": local, "remote": remote,
            "users": dba, "roles": dba_roles, "param": {"user": "dba-breakglass", "db": "admin", "mechanism": "SCRAM-SHA-256"}, "result": 0}));
        self.push_audit(0, t + Duration::seconds(20), json!({"atype": "dropDatabase", "ts": null, "uuid": uuid, "local": local,
            "remote": remote, "users": dba, "roles": dba_roles, "param": {"ns": "reporting_tmp"}, "result": 0}));
        self.push_audit(0, t + Duration::minutes(5), json!({"atype": "createUser", "ts": null, "uuid": uuid, "local": local,
            "remote": remote, "users": dba, "roles": dba_roles, "param": {"user": "svc-backup", "db": "admin",
            "customData": {}, "roles": [{"role": "root", "db": "admin"}]}, "result": 0}));

        // Failed-login burst.
        let start = self.day + Duration::minutes(3 * 60 + 17);
        for attempt in 0..30 {
            let uuid = self.conn_uuid();
            let t = start + Duration::seconds(attempt * 3);
            self.push_audit(1, t, json!({"atype": "authenticate", "ts": null, "uuid": uuid, "local": local,
                "remote": {"ip": BURST_IP, "port": 40000 + attempt}, "users": [], "roles": [],
                "param": {"user": "admin", "db": "admin", "mechanism": "SCRAM-SHA-256"}, "result": 18}));
            self.manifest.failed_logins_in_burst += 1;
        }
    }

    /// The database role's trust policy set in the morning and widened to `alice` at 14:05,
    /// seven minutes before she assumes it; a read-only role created for the Lambda.
    fn trust_changes(&mut self) {
        let morning = trust_policy(&[(LAMBDA_ROLE, None), (CI_ACCOUNT_ROOT, Some(CI_EXTERNAL_ID))]);
        let widened = trust_policy(&[
            (LAMBDA_ROLE, None),
            (CI_ACCOUNT_ROOT, Some(CI_EXTERNAL_ID)),
            (UNEXPECTED_USER, None),
        ]);
        let readonly = trust_policy(&[(LAMBDA_ROLE, None)]);
        let changes = [
            (
                8 * 60 + 2,
                "UpdateAssumeRolePolicy",
                "mongo-atlas-access",
                morning,
            ),
            (10 * 60 + 15, "CreateRole", "mongo-atlas-readonly", readonly),
            (
                14 * 60 + 5,
                "UpdateAssumeRolePolicy",
                "mongo-atlas-access",
                widened,
            ),
        ];
        for (minute, event_name, role_name, policy) in changes {
            let time = self.day + Duration::minutes(minute) + Duration::seconds(30);
            let record = self.trust_policy_event(time, event_name, role_name, &policy);
            self.push_ct(ACCOUNT, time, record);
            self.manifest.trust_policy_events += 1;
        }
    }

    pub(super) fn background_ct(&mut self, count: usize) {
        const CALLS: [(&str, &str, bool); 6] = [
            ("ec2.amazonaws.com", "DescribeInstances", true),
            ("s3.amazonaws.com", "ListBuckets", true),
            ("kms.amazonaws.com", "Decrypt", true),
            ("lambda.amazonaws.com", "Invoke", false),
            ("logs.amazonaws.com", "CreateLogStream", false),
            ("iam.amazonaws.com", "GetRole", true),
        ];
        for _ in 0..count {
            let minute = self.rng.random_range(0..1440);
            let time = self.at(minute);
            let (source, name, read_only) = CALLS[self.rng.random_range(0..CALLS.len())];
            let identity = if source == "kms.amazonaws.com" {
                json!({"type": "AWSService", "invokedBy": "lambda.amazonaws.com"})
            } else {
                self.role_session(ACCOUNT, "", "platform-ops", "ops", time)
            };
            let (request, response) = self.padding();
            let record = json!({
                "eventVersion": "1.09", "userIdentity": identity, "eventTime": ts(time), "eventSource": source,
                "eventName": name, "awsRegion": REGION, "sourceIPAddress": "10.20.7.44",
                "userAgent": "aws-sdk-go-v2/1.32.2 os/linux lang/go#1.23.2", "requestParameters": request,
                "responseElements": response, "requestID": self.id(), "eventID": self.id(), "readOnly": read_only,
                "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": ACCOUNT, "eventCategory": "Management"
            });
            self.push_ct(ACCOUNT, time, record);
            // Some events arrive in a later file than their time suggests.
            if self.rng.random_range(0..20) == 0
                && let Some(last) = self.ct.last_mut()
            {
                last.delay_minutes = 15;
            }
        }
    }

    /// Request parameters and response elements of a background record: a page size alone,
    /// or (with a record size asked for) filters and the instances they found, between none and
    /// twice the average number of items.
    fn padding(&mut self) -> (Value, Value) {
        if self.padding_items <= 0.0 {
            return (json!({"maxResults": 50}), Value::Null);
        }
        // Uniform over 0..=2n, whose mean is n: a fractional mean takes the two nearest n.
        let mean = self.padding_items.floor() as usize
            + usize::from(self.rng.random_bool(self.padding_items.fract()));
        let items = self.rng.random_range(0..=2 * mean);
        let filters = items / 3;
        let request = json!({
            "maxResults": 50,
            "filterSet": {"items": (0..filters).map(|n| json!({
                "name": format!("tag:team-{n}"),
                "valueSet": {"items": [{"value": format!("platform-{}", self.rng.random_range(0..1000))}]}
            })).collect::<Vec<_>>()},
        });
        let instances: Vec<Value> = (0..items - filters)
            .map(|_| {
                json!({
                    "instanceId": format!("i-{:017x}", self.rng.random::<u64>() >> 4),
                    "imageId": "ami-0abcdef1234567890",
                    "instanceState": {"code": 16, "name": "running"},
                    "privateIpAddress": format!("10.20.{}.{}", self.rng.random_range(0..255), self.rng.random_range(1..255)),
                    "subnetId": "subnet-0123456789abcdef0",
                })
            })
            .collect();
        (request, json!({"instancesSet": {"items": instances}}))
    }

    pub(super) fn background_audit(&mut self, count: usize) {
        let mut remaining = count;
        while remaining > 0 {
            let minute = self.rng.random_range(0..1440);
            let time = self.at(minute);
            let commands = remaining
                .saturating_sub(3)
                .min(self.rng.random_range(1..40));
            let host = self.rng.random_range(0..2);
            self.db_session(
                host,
                time,
                "orders-worker",
                "admin",
                "SCRAM-SHA-256",
                "10.20.3.16",
                "orders-worker",
                commands,
            );
            remaining = remaining.saturating_sub(commands + 3);
        }
    }
}
