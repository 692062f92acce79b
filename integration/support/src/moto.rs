//! A real moto server (PyPI `moto[server]`, in the test virtualenv) for the AWS backends: SSM,
//! Secrets Manager, DynamoDB and IAM on a free loopback port, one process per server so tests
//! never share state. With [`MotoOptions::iam`] it checks signatures and IAM policies, which the
//! tests of wrong credentials and denied access need.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, kill, log_tail, wait_ready};

/// The region every test uses; moto keeps each region's data apart.
pub const MOTO_REGION: &str = "us-east-1";

/// How to start a [`MotoServer`].
#[derive(Debug, Clone, Default)]
pub struct MotoOptions {
    /// Enforce IAM: requests must be signed by a known access key whose user's policies allow
    /// the action. The server then holds two users, see [`MotoServer::admin`] and
    /// [`MotoServer::nobody`].
    pub iam: bool,
}

/// Access keys of a moto IAM user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

/// One moto server on 127.0.0.1.
#[derive(Debug)]
pub struct MotoServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    admin: Option<AccessKey>,
    nobody: Option<AccessKey>,
}

/// The IAM calls made before moto starts checking (`INITIAL_NO_AUTH_ACTION_COUNT`): create
/// the admin user, its key, give it an allow-everything inline policy; create the user without
/// policies and its key.
const IAM_SETUP_CALLS: usize = 5;

impl MotoServer {
    /// Starts moto without IAM checks; see [`MotoServer::start_with`].
    pub fn start() -> Option<MotoServer> {
        MotoServer::start_with(MotoOptions::default())
    }

    /// Starts moto and waits until it answers. `None` (after a loud notice) when the test
    /// virtualenv is missing outside CI; panics under CI or when the server does not come up.
    pub fn start_with(options: MotoOptions) -> Option<MotoServer> {
        let binary = crate::venv::program("moto_server", "to test the AWS backends against moto")?;
        let mut last_error = String::new();
        for _ in 0..3 {
            match MotoServer::spawn(&binary, &options) {
                Ok(server) => return Some(server),
                Err(e) => last_error = e,
            }
        }
        panic!("moto did not start: {last_error}");
    }

    fn spawn(binary: &PathBuf, options: &MotoOptions) -> Result<MotoServer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let log_path = dir.path().join("moto.log");
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let err_log = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(binary);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            // No credentials or config of the machine's user leak into moto.
            .env("HOME", dir.path())
            .env("AWS_DEFAULT_REGION", MOTO_REGION)
            .env_remove("AWS_PROFILE");
        if options.iam {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", IAM_SETUP_CALLS.to_string());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
        let ready = wait_ready(&mut child, Duration::from_secs(60), || {
            crate::http_get(port, "/moto-api/").is_some()
        });
        if let Err(e) = ready {
            kill(&mut child);
            return Err(format!("{e}; log:\n{}", log_tail(&log_path)));
        }
        let mut server = MotoServer {
            dir,
            port,
            child: Some(child),
            admin: None,
            nobody: None,
        };
        if options.iam {
            server.admin = Some(server.iam_user("confd-admin", true)?);
            server.nobody = Some(server.iam_user("confd-nobody", false)?);
        }
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`: the endpoint of every service.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Credentials moto accepts: the admin user's with IAM checks on, anything otherwise.
    pub fn credentials(&self) -> AccessKey {
        self.admin.clone().unwrap_or_else(|| AccessKey {
            id: "AKIDCONFDTEST".to_string(),
            secret: "confd-test-secret".to_string(),
        })
    }

    /// With IAM checks: the user allowed everything.
    pub fn admin(&self) -> Option<&AccessKey> {
        self.admin.as_ref()
    }

    /// With IAM checks: a user without any policy, denied everything.
    pub fn nobody(&self) -> Option<&AccessKey> {
        self.nobody.as_ref()
    }

    /// The server's log so far (requests and tracebacks), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Sets the SSM String parameter `name` (PutParameter with overwrite).
    pub fn ssm_put(&self, name: &str, value: &str) {
        let body = serde_json::json!({
            "Name": name, "Value": value, "Type": "String", "Overwrite": true
        });
        self.json_call("ssm", "AmazonSSM.PutParameter", "1.1", &body)
            .unwrap_or_else(|e| panic!("ssm put {name}: {e}"));
    }

    /// Sets the secret `name` to `value`: creates it, or puts a new current version.
    pub fn secret_put(&self, name: &str, value: &str) {
        let create = serde_json::json!({ "Name": name, "SecretString": value });
        if self
            .json_call(
                "secretsmanager",
                "secretsmanager.CreateSecret",
                "1.1",
                &create,
            )
            .is_err()
        {
            let put = serde_json::json!({ "SecretId": name, "SecretString": value });
            self.json_call(
                "secretsmanager",
                "secretsmanager.PutSecretValue",
                "1.1",
                &put,
            )
            .unwrap_or_else(|e| panic!("secret put {name}: {e}"));
        }
    }

    /// Creates a DynamoDB table in the original confd's layout (string partition key `key`).
    pub fn dynamodb_create_table(&self, table: &str) {
        let body = serde_json::json!({
            "TableName": table,
            "AttributeDefinitions": [{"AttributeName": "key", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "key", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST"
        });
        self.json_call("dynamodb", "DynamoDB_20120810.CreateTable", "1.0", &body)
            .unwrap_or_else(|e| panic!("create table {table}: {e}"));
    }

    /// Puts the item `{key, value}` (both strings) into `table`.
    pub fn dynamodb_put(&self, table: &str, key: &str, value: &str) {
        let body = serde_json::json!({
            "TableName": table,
            "Item": {"key": {"S": key}, "value": {"S": value}}
        });
        self.json_call("dynamodb", "DynamoDB_20120810.PutItem", "1.0", &body)
            .unwrap_or_else(|e| panic!("dynamodb put {key}: {e}"));
    }

    /// One call of an AWS JSON-protocol API, signed with the test credentials' scope only (moto
    /// tells the service from it and checks no signature without IAM).
    fn json_call(
        &self,
        service: &str,
        target: &str,
        json_version: &str,
        body: &serde_json::Value,
    ) -> Result<String, String> {
        let key = self.credentials();
        let body = body.to_string();
        self.http_post(
            &format!(
                "X-Amz-Target: {target}\r\n\
                 Content-Type: application/x-amz-json-{json_version}\r\n\
                 Authorization: AWS4-HMAC-SHA256 Credential={}/20240101/{MOTO_REGION}/{service}/aws4_request, \
                 SignedHeaders=host, Signature=0\r\n",
                key.id
            ),
            &body,
        )
    }

    /// Creates an IAM user with an access key (and AdministratorAccess when `admin`), through
    /// IAM's query API while moto still lets calls through unchecked.
    fn iam_user(&self, name: &str, admin: bool) -> Result<AccessKey, String> {
        self.iam_call(&format!("Action=CreateUser&UserName={name}"))?;
        let reply = self.iam_call(&format!("Action=CreateAccessKey&UserName={name}"))?;
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let close = format!("</{tag}>");
            let start = reply.find(&open)? + open.len();
            let end = reply[start..].find(&close)? + start;
            Some(reply[start..end].to_string())
        };
        let key = AccessKey {
            id: field("AccessKeyId").ok_or_else(|| format!("no AccessKeyId in {reply}"))?,
            secret: field("SecretAccessKey")
                .ok_or_else(|| format!("no SecretAccessKey in {reply}"))?,
        };
        if admin {
            // {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}
            let document = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B\
                            %22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22*%22%2C\
                            %22Resource%22%3A%22*%22%7D%5D%7D";
            self.iam_call(&format!(
                "Action=PutUserPolicy&UserName={name}&PolicyName=everything\
                 &PolicyDocument={document}"
            ))?;
        }
        Ok(key)
    }

    /// One unsigned IAM query call (moto tells the service from the credential scope).
    fn iam_call(&self, params: &str) -> Result<String, String> {
        let body = format!("{params}&Version=2010-05-08");
        self.http_post(
            &format!(
                "Content-Type: application/x-www-form-urlencoded\r\n\
                 Authorization: AWS4-HMAC-SHA256 Credential=AKIDSETUP/20240101/{MOTO_REGION}/iam/aws4_request, \
                 SignedHeaders=host, Signature=0\r\n"
            ),
            &body,
        )
    }

    /// `POST /` with `headers` (each line ending in CRLF) and `body`; the answer when it is 200.
    fn http_post(&self, headers: &str, body: &str) -> Result<String, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        write!(
            stream,
            "POST / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Length: {len}\r\n\r\n{body}",
            port = self.port,
            len = body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .map_err(|e| e.to_string())?;
        let status_ok = reply
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code == "200");
        if !status_ok {
            return Err(reply);
        }
        Ok(reply)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
