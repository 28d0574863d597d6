//! `moat`: the server (`moat serve`) and its client, modelled on `az ml` and `az`.

mod assets;
mod commands;
mod config;
mod generic;
mod identity;
mod network;
mod output;
mod serve;
mod transfer;
mod yaml;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use moat_client::{Client, Profile};

use crate::commands::CliError;
use crate::config::FileConfig;
use crate::output::Output;

/// mimalloc, tuned in `main` (see moat-alloc).
#[global_allocator]
static ALLOCATOR: moat_alloc::Allocator = moat_alloc::Allocator;

#[derive(Parser, Debug)]
#[command(
    name = "moat",
    version,
    about = "A self-hosted registry for machine-learning assets with real network isolation.",
    after_help = "Examples:\n  moat serve                              # start on the embedded defaults\n  moat registry create --file registry.yml\n  moat registry list --output table"
)]
struct Cli {
    /// Client profile to use (default: $MOAT_PROFILE, else profile.json in the default data directory).
    #[arg(long, global = true, env = "MOAT_PROFILE")]
    profile: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "json")]
    output: Output,
    /// Call from this address of a (loopback-mode) virtual network: data-plane requests then go
    /// through the network's approved private endpoints.
    #[arg(long, global = true, env = "MOAT_SOURCE_ADDRESS")]
    source_address: Option<std::net::IpAddr>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the moat server.
    #[command(
        after_help = "Examples:\n  moat serve\n  moat serve --data-dir /var/lib/moat --listen 127.0.0.1:7700\n  moat serve --config /etc/moat/moat.toml"
    )]
    Serve(ServeArgs),
    /// Show the signed-in account and get access tokens.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage resource groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage Azure ML registries.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Sign in as a user or a service principal; writes a profile.
    #[command(
        after_help = "Examples:\n  moat login -u alice@example.com -p '...'\n  moat login --service-principal -u APPID -p SECRET --tenant TENANT --endpoint http://127.0.0.1:7700"
    )]
    Login(LoginArgs),
    /// Manage users and service principals.
    #[command(subcommand)]
    Ad(AdCommand),
    /// Manage role definitions and role assignments.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Manage models in a registry.
    #[command(subcommand)]
    Model(AssetCommand),
    /// Manage data assets in a registry.
    #[command(subcommand)]
    Data(AssetCommand),
    /// Manage code assets (source folders that components run) in a registry.
    #[command(subcommand)]
    Code(AssetCommand),
    /// Manage components in a registry.
    #[command(subcommand)]
    Component(AssetCommand),
    /// Manage environments in a registry.
    #[command(subcommand)]
    Environment(AssetCommand),
    /// Query the activity (audit) log.
    #[command(subcommand)]
    Monitor(MonitorCommand),
    /// Manage virtual networks, private endpoints and their connections.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Network settings of registries' storage accounts, and the byte store's garbage collection.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Network settings of registries' container registries.
    #[command(subcommand)]
    Acr(AcrCommand),
    /// Print the OpenAPI document of moat's REST API.
    #[command(after_help = "Example:\n  moat openapi > openapi.json")]
    Openapi,
}

/// Where an asset is: `--name` (or an asset ID `azureml://registries/...`), `--version`, the registry.
#[derive(clap::Args, Debug)]
struct AssetWhere {
    /// The asset's name, or its asset ID (azureml://registries/<r>/<type>/<name>[/versions/<v>]).
    #[arg(long, short = 'n')]
    name: String,
    /// The version (default: the latest).
    #[arg(long, short = 'v')]
    version: Option<String>,
    #[arg(long)]
    registry_name: Option<String>,
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AssetCommand {
    /// Create a version from an az ml YAML file, uploading its files.
    #[command(
        after_help = "Example:\n  moat model create --file model.yml --registry-name demo-registry\n\nmodel.yml:\n  name: sentiment\n  version: 1\n  path: ./model\n  type: custom_model\n\nAn environment from an image, or from a Docker build context that is uploaded:\n  moat environment create --file env.yml --registry-name demo-registry\n\nenv.yml:\n  name: trainer\n  version: 1\n  build:\n    path: ./docker-context\n    dockerfile_path: Dockerfile"
    )]
    Create {
        #[arg(long, short = 'f')]
        file: PathBuf,
        #[arg(long)]
        registry_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Show a version (default: the latest).
    #[command(
        after_help = "Examples:\n  moat model show --name sentiment --version 1 --registry-name demo-registry\n  moat model show --name azureml://registries/demo-registry/models/sentiment/versions/1"
    )]
    Show(AssetWhere),
    /// List assets, or the versions of one.
    #[command(
        after_help = "Examples:\n  moat model list --registry-name demo-registry\n  moat model list --registry-name demo-registry --name sentiment --output table"
    )]
    List {
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[arg(long)]
        registry_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Show archived ones instead of active ones.
        #[arg(long)]
        archived_only: bool,
    },
    /// Archive a version: it stays usable but is hidden from lists and from "latest". Without
    /// --version, archive the asset itself: it is hidden from the asset list.
    #[command(
        after_help = "Examples:\n  moat model archive --name sentiment --version 1 --registry-name demo-registry\n  moat model archive --name sentiment --registry-name demo-registry"
    )]
    Archive(AssetWhere),
    /// Restore an archived version, or without --version an archived asset.
    #[command(
        after_help = "Examples:\n  moat model restore --name sentiment --version 1 --registry-name demo-registry\n  moat model restore --name sentiment --registry-name demo-registry"
    )]
    Restore(AssetWhere),
    /// Change a version's description, tags or stage (its content never changes).
    #[command(
        after_help = "Example:\n  moat model update --name sentiment --version 1 --registry-name demo-registry --set stage=Production tags.team=nlp"
    )]
    Update {
        #[command(flatten)]
        at: AssetWhere,
        #[arg(long, num_args = 1..)]
        set: Vec<String>,
    },
    /// Delete a version.
    #[command(after_help = "Example:\n  moat model delete --name sentiment --version 1 --registry-name demo-registry")]
    Delete(AssetWhere),
    /// Download a version's files (an environment's build context), verifying each sha256.
    #[command(
        after_help = "Example:\n  moat model download --name sentiment --version 1 --registry-name demo-registry --download-path ./out"
    )]
    Download {
        #[command(flatten)]
        at: AssetWhere,
        #[arg(long, default_value = ".")]
        download_path: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum MonitorCommand {
    /// The activity log.
    #[command(subcommand)]
    ActivityLog(ActivityLogCommand),
}

#[derive(Subcommand, Debug)]
enum ActivityLogCommand {
    /// List authentication failures and authorization decisions, newest first.
    #[command(
        after_help = "Examples:\n  moat monitor activity-log list --result denied --output table\n  moat monitor activity-log list --resource-id /subscriptions/SUB/resourceGroups/default --since 1h"
    )]
    List {
        /// Entries on this resource and everything below it.
        #[arg(long)]
        resource_id: Option<String>,
        /// Object ID, user principal name or application ID.
        #[arg(long)]
        principal: Option<String>,
        #[arg(long, value_parser = ["allowed", "denied", "unauthenticated"])]
        result: Option<String>,
        /// An RFC 3339 time, or a duration back from now such as 30m, 2h or 1d.
        #[arg(long)]
        since: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        max_events: usize,
    },
}

#[derive(clap::Args, Debug)]
struct LoginArgs {
    /// User principal name, or the application ID with --service-principal.
    #[arg(long, short = 'u')]
    username: String,
    /// Password or client secret (read from standard input when omitted).
    #[arg(long, short = 'p')]
    password: Option<String>,
    /// Sign in as a service principal.
    #[arg(long)]
    service_principal: bool,
    #[arg(long, short = 't')]
    tenant: Option<String>,
    /// moat's URL (default: the current profile's).
    #[arg(long)]
    endpoint: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AdCommand {
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage service principals.
    #[command(subcommand)]
    Sp(SpCommand),
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user who signs in with a password.
    #[command(
        after_help = "Examples:\n  moat ad user create --display-name Alice --user-principal-name alice@example.com --password '...'\n  moat ad user create --display-name Bob --user-principal-name bob@corp.example --external-issuer https://login.microsoftonline.com/TENANT/v2.0 --external-subject OID"
    )]
    Create {
        #[arg(long)]
        display_name: String,
        #[arg(long)]
        user_principal_name: String,
        /// For password sign-in: at least 12 characters.
        #[arg(long, required_unless_present = "external_issuer", conflicts_with = "external_issuer")]
        password: Option<String>,
        /// For sign-in through a trusted external OpenID Connect issuer: its `iss`.
        #[arg(long, requires = "external_subject")]
        external_issuer: Option<String>,
        /// The `oid` (or `sub`) the external issuer's tokens carry for this user.
        #[arg(long, requires = "external_issuer")]
        external_subject: Option<String>,
    },
    /// Show a user by object ID or user principal name.
    #[command(after_help = "Example:\n  moat ad user show --id alice@example.com")]
    Show {
        #[arg(long)]
        id: String,
    },
    /// List users.
    #[command(after_help = "Example:\n  moat ad user list --output table")]
    List,
    /// Delete a user and their role assignments.
    #[command(after_help = "Example:\n  moat ad user delete --id alice@example.com")]
    Delete {
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum SpCommand {
    /// Create a service principal (and optionally assign it a role); prints its secret once.
    #[command(
        after_help = "Examples:\n  moat ad sp create-for-rbac --name ci\n  moat ad sp create-for-rbac --name ci --role 'AzureML Registry User' --scopes /subscriptions/SUB/resourceGroups/default"
    )]
    CreateForRbac {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long, num_args = 1..)]
        scopes: Vec<String>,
    },
    /// Show a service principal by object or application ID.
    #[command(after_help = "Example:\n  moat ad sp show --id APPID")]
    Show {
        #[arg(long)]
        id: String,
    },
    /// List service principals.
    #[command(after_help = "Example:\n  moat ad sp list --output table")]
    List,
    /// Delete a service principal and its role assignments.
    #[command(after_help = "Example:\n  moat ad sp delete --id APPID")]
    Delete {
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum RoleCommand {
    /// Manage role definitions.
    #[command(subcommand)]
    Definition(RoleDefinitionCommand),
    /// Manage role assignments.
    #[command(subcommand)]
    Assignment(RoleAssignmentCommand),
}

#[derive(Subcommand, Debug)]
enum RoleDefinitionCommand {
    /// Create (or update, by name) a custom role from az-style JSON.
    #[command(
        after_help = "Example:\n  moat role definition create --role-definition role.json\n\nrole.json:\n  {\"Name\": \"Asset reader\", \"Actions\": [\"Microsoft.MachineLearningServices/registries/read\", \"Microsoft.MachineLearningServices/registries/assets/read\"], \"AssignableScopes\": [\"/subscriptions/SUB\"]}"
    )]
    Create {
        /// A file, or the JSON itself.
        #[arg(long)]
        role_definition: String,
    },
    /// List role definitions.
    #[command(after_help = "Examples:\n  moat role definition list --output table\n  moat role definition list --name Reader")]
    List {
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// Only custom roles.
        #[arg(long)]
        custom_role_only: bool,
    },
    /// Delete a custom role that is no longer assigned.
    #[command(after_help = "Example:\n  moat role definition delete --name 'Asset reader'")]
    Delete {
        #[arg(long, short = 'n')]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum RoleAssignmentCommand {
    /// Assign a role to a user or service principal at a scope (default: the subscription).
    #[command(
        after_help = "Example:\n  moat role assignment create --assignee alice@example.com --role Reader --scope /subscriptions/SUB/resourceGroups/default"
    )]
    Create {
        /// User principal name, object ID or application ID.
        #[arg(long)]
        assignee: String,
        /// Role name or ID.
        #[arg(long)]
        role: String,
        #[arg(long)]
        scope: Option<String>,
    },
    /// List role assignments at a scope and below.
    #[command(after_help = "Example:\n  moat role assignment list --assignee alice@example.com --output table")]
    List {
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        scope: Option<String>,
    },
    /// Delete role assignments by ID, or by assignee (and role and scope).
    #[command(
        after_help = "Examples:\n  moat role assignment delete --assignee alice@example.com --role Reader\n  moat role assignment delete --ids /subscriptions/SUB/providers/Microsoft.Authorization/roleAssignments/GUID"
    )]
    Delete {
        #[arg(long, num_args = 1..)]
        ids: Vec<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        scope: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Directory for the database, the bytes and the administrator profile [env: MOAT_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the public listener, e.g. 127.0.0.1:7700 (port 0 picks one) [env: MOAT_LISTEN].
    #[arg(long)]
    listen: Option<String>,
    /// TOML configuration file; see examples/moat.toml [env: MOAT_CONFIG].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Metadata database: sqlite://PATH (default <data-dir>/moat.db) or
    /// postgres://USER@HOST:PORT/DB [env: MOAT_DATABASE_URL].
    #[arg(long)]
    database_url: Option<String>,
    /// Where bytes live: file:///PATH (default <data-dir>/blobs), azure://CONTAINER[/PREFIX]
    /// or s3://BUCKET[/PREFIX]; credentials from AZURE_STORAGE_* / AWS_* [env: MOAT_BLOB_URL].
    #[arg(long)]
    blob_url: Option<String>,
    /// Base URL clients use to reach moat [env: MOAT_PUBLIC_URL].
    #[arg(long)]
    public_url: Option<String>,
    /// DNS zone under which resources are named [env: MOAT_DNS_ZONE].
    #[arg(long)]
    dns_zone: Option<String>,
    /// Serve DNS for the zone on this address, UDP and TCP, e.g. 127.0.0.1:5353 [env: MOAT_DNS_LISTEN].
    #[arg(long)]
    dns_listen: Option<String>,
    /// HTTPS with certificates from moat's local CA: on by default; --tls=false serves plain
    /// HTTP, on loopback only (development) [env: MOAT_TLS].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls: Option<bool>,
    /// Whether an allowed read's answer waits for its activity log entry: async (default) or
    /// durable [env: MOAT_AUDIT_READS].
    #[arg(long, value_name = "WHEN", value_parser = ["async", "durable"])]
    audit_reads: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Show the subscription and tenant of the profile.
    #[command(after_help = "Example:\n  moat account show")]
    Show,
    /// Get an access token, as `az account get-access-token` does.
    #[command(
        after_help = "Examples:\n  moat account get-access-token\n  curl -H \"Authorization: Bearer $(moat account get-access-token | jq -r .accessToken)\" ..."
    )]
    GetAccessToken {
        /// Which API the token is for.
        #[arg(long, default_value = "management", value_parser = ["management", "ml"])]
        resource: String,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// Create or update a resource group.
    #[command(after_help = "Example:\n  moat group create --name team-a --location eastus --tags owner=ml")]
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'l')]
        location: String,
        /// Tags as key=value.
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
    },
    /// Show a resource group.
    #[command(after_help = "Example:\n  moat group show --name team-a")]
    Show {
        #[arg(long, short = 'n')]
        name: String,
    },
    /// List resource groups.
    #[command(after_help = "Example:\n  moat group list --output table")]
    List,
    /// Delete an empty resource group.
    #[command(after_help = "Example:\n  moat group delete --name team-a --yes")]
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RegistryCommand {
    /// Create a registry from an az ml registry YAML file.
    #[command(after_help = "Example:\n  moat registry create --file examples/registry.yml --resource-group default")]
    Create {
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Resource group (default: the profile's).
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Show a registry with its managed resource group, storage accounts and container registry,
    /// and the names (FQDNs) its planes answer to (`fqdns`).
    #[command(after_help = "Example:\n  moat registry show --name demo-registry")]
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// List registries in a resource group, or in the whole subscription.
    #[command(after_help = "Examples:\n  moat registry list\n  moat registry list --resource-group default --output table")]
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Change a registry with --set / --remove (read, modify, write with If-Match).
    #[command(
        after_help = "Examples:\n  moat registry update --name demo-registry --set publicNetworkAccess=Disabled\n  moat registry update --name demo-registry --set tags.team=ml --remove tags.old"
    )]
    Update {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// path=value; paths not at the top level are looked up under properties.
        #[arg(long, num_args = 1..)]
        set: Vec<String>,
        /// path of a field (or list element) to remove.
        #[arg(long, num_args = 1..)]
        remove: Vec<String>,
    },
    /// Delete a registry with its managed resource group.
    #[command(after_help = "Example:\n  moat registry delete --name demo-registry --yes")]
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Decide private endpoint connections to a registry.
    #[command(subcommand)]
    PrivateEndpointConnection(network::RegistryConnectionCommand),
}

#[derive(Subcommand, Debug)]
enum StorageCommand {
    /// A registry's storage accounts.
    #[command(subcommand)]
    Account(StorageAccountCommand),
    /// Collect the byte store's garbage now: remove stored files (or objects, on an object
    /// store) that nothing refers to any more and that nothing stored for the server's
    /// gc_grace_secs (it also runs every gc_interval_secs). Waits until the collection is over
    /// (up to 12 hours; the server finishes it even if this command stops waiting). Needs
    /// Owner or Contributor on the subscription.
    #[command(after_help = "Examples:
  moat storage gc --dry-run
  moat storage gc --output table")]
    Gc {
        /// Count what a collection would remove, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum StorageAccountCommand {
    /// Change the network settings of a registry's storage accounts.
    #[command(after_help = "Examples:
  moat storage account update --registry-name demo --public-network-access Enabled
  moat storage account update --registry-name demo --public-network-access Inherit
  moat storage account update --id ID --default-action Deny --ip-rules 127.0.0.9 127.40.0.0/16")]
    Update(network::NetworkSettings),
}

#[derive(Subcommand, Debug)]
enum AcrCommand {
    /// Change the network settings of a registry's container registry.
    #[command(after_help = "Example:
  moat acr update --registry-name demo --public-network-access Disabled")]
    Update(network::NetworkSettings),
    /// Credentials for OCI clients (skopeo, oras, docker) on a registry's container registry,
    /// like `az acr login --expose-token`: the login server, the image prefix on moat's own
    /// address, a username and a token to use as password. See docs/OCI.md.
    #[command(after_help = "Example:
  moat acr login --registry-name demo --expose-token
  skopeo copy --preserve-digests --dest-creds 00000000-0000-0000-0000-000000000000:$TOKEN \\
    oci:./image:v1 docker://127.0.0.1:7700/<acr>/team/env:v1")]
    Login {
        #[arg(long)]
        registry_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Print the token (moat writes no client configuration files).
        #[arg(long, required = true)]
        expose_token: bool,
    },
}

fn serve_config(args: ServeArgs) -> Result<config::ServeConfig, String> {
    let file = match args.config.or_else(|| std::env::var_os("MOAT_CONFIG").map(PathBuf::from)) {
        Some(p) => FileConfig::load(&p)?,
        None => FileConfig::default(),
    };
    let env = FileConfig::from_env(std::env::vars())?;
    let flags = FileConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        database_url: args.database_url,
        blob_url: args.blob_url,
        public_url: args.public_url,
        dns_zone: args.dns_zone,
        dns_listen: args.dns_listen,
        tls: args.tls,
        audit_reads: args.audit_reads,
        ..FileConfig::default()
    };
    file.overlay(env).overlay(flags).validate()
}

/// Where `moat login` writes a profile when no --profile or MOAT_PROFILE names one.
fn login_profile_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("moat/profile.json")
}

/// The profile to use: --profile, then MOAT_PROFILE, then the one `moat login` wrote, then the
/// administrator profile of the default data directory.
fn profile_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        let login = login_profile_path();
        if login.exists() { login } else { config::default_data_dir().join("profile.json") }
    })
}

fn client(profile: Option<PathBuf>) -> Result<Client, CliError> {
    let path = profile_path(profile);
    let p = Profile::load(&path)
        .map_err(|e| CliError::Usage(format!("{e}. Start `moat serve` (it writes the profile), run `moat login`, or pass --profile")))?;
    Ok(Client::new(p)?)
}

fn read_secret() -> Result<String, CliError> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprint!("Password: ");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn run_client(cli: Cli) -> Result<(), CliError> {
    let out = cli.output;
    if let Command::Login(args) = cli.command {
        let target = cli.profile.clone().unwrap_or_else(login_profile_path);
        // Endpoint and tenant default to the profile being replaced, else the default one.
        let current = Profile::load(&profile_path(cli.profile)).or_else(|_| Profile::load(&profile_path(None))).ok();
        let password = match args.password {
            Some(p) => p,
            None => read_secret()?,
        };
        return identity::login(&target, current, args.endpoint, args.tenant, &args.username, &password, args.service_principal).await;
    }
    let c = client(cli.profile)?;
    let c = match cli.source_address {
        Some(a) => c.with_source(a)?,
        None => c,
    };
    let rg = |g: Option<String>| g.unwrap_or_else(|| c.profile().resource_group.clone());
    match cli.command {
        Command::Serve(_) | Command::Openapi | Command::Login(_) => Ok(()),
        Command::Model(cmd) => run_asset(&c, assets::Kind::Model, cmd, out).await,
        Command::Data(cmd) => run_asset(&c, assets::Kind::Data, cmd, out).await,
        Command::Code(cmd) => run_asset(&c, assets::Kind::Code, cmd, out).await,
        Command::Component(cmd) => run_asset(&c, assets::Kind::Component, cmd, out).await,
        Command::Environment(cmd) => run_asset(&c, assets::Kind::Environment, cmd, out).await,
        Command::Monitor(MonitorCommand::ActivityLog(ActivityLogCommand::List { resource_id, principal, result, since, max_events })) => {
            identity::activity_log_list(
                &c,
                resource_id.as_deref(),
                principal.as_deref(),
                result.as_deref(),
                since.as_deref(),
                max_events,
                out,
            )
            .await
        }
        Command::Ad(AdCommand::User(UserCommand::Create {
            display_name,
            user_principal_name,
            password,
            external_issuer,
            external_subject,
        })) => {
            let external = external_issuer.zip(external_subject);
            identity::user_create(&c, &display_name, &user_principal_name, password.as_deref(), external, out).await
        }
        Command::Ad(AdCommand::User(UserCommand::Show { id })) => identity::user_show(&c, &id, out).await,
        Command::Ad(AdCommand::User(UserCommand::List)) => identity::user_list(&c, out).await,
        Command::Ad(AdCommand::User(UserCommand::Delete { id })) => identity::user_delete(&c, &id).await,
        Command::Ad(AdCommand::Sp(SpCommand::CreateForRbac { name, role, scopes })) => {
            identity::sp_create_for_rbac(&c, &name, role.as_deref(), &scopes, out).await
        }
        Command::Ad(AdCommand::Sp(SpCommand::Show { id })) => identity::sp_show(&c, &id, out).await,
        Command::Ad(AdCommand::Sp(SpCommand::List)) => identity::sp_list(&c, out).await,
        Command::Ad(AdCommand::Sp(SpCommand::Delete { id })) => identity::sp_delete(&c, &id).await,
        Command::Role(RoleCommand::Definition(RoleDefinitionCommand::Create { role_definition })) => {
            identity::role_definition_create(&c, &role_definition, out).await
        }
        Command::Role(RoleCommand::Definition(RoleDefinitionCommand::List { name, custom_role_only })) => {
            identity::role_definition_list(&c, name.as_deref(), custom_role_only, out).await
        }
        Command::Role(RoleCommand::Definition(RoleDefinitionCommand::Delete { name })) => identity::role_definition_delete(&c, &name).await,
        Command::Role(RoleCommand::Assignment(RoleAssignmentCommand::Create { assignee, role, scope })) => {
            identity::role_assignment_create(&c, &assignee, &role, scope.as_deref(), out).await
        }
        Command::Role(RoleCommand::Assignment(RoleAssignmentCommand::List { assignee, scope })) => {
            identity::role_assignment_list(&c, assignee.as_deref(), scope.as_deref(), out).await
        }
        Command::Role(RoleCommand::Assignment(RoleAssignmentCommand::Delete { ids, assignee, role, scope })) => {
            identity::role_assignment_delete(&c, &ids, assignee.as_deref(), role.as_deref(), scope.as_deref()).await
        }

        Command::Account(AccountCommand::Show) => commands::account_show(&c, out).await,
        Command::Account(AccountCommand::GetAccessToken { resource }) => commands::account_get_access_token(&c, &resource, out).await,
        Command::Group(GroupCommand::Create { name, location, tags }) => commands::group_create(&c, &name, &location, &tags, out).await,
        Command::Group(GroupCommand::Show { name }) => commands::group_show(&c, &name, out).await,
        Command::Group(GroupCommand::List) => commands::group_list(&c, out).await,
        Command::Group(GroupCommand::Delete { name, yes }) => commands::group_delete(&c, &name, yes).await,
        Command::Registry(RegistryCommand::Create { file, resource_group }) => {
            commands::registry_create(&c, &file, &rg(resource_group), out).await
        }
        Command::Registry(RegistryCommand::Show { name, resource_group }) => {
            commands::registry_show(&c, &name, &rg(resource_group), out).await
        }
        Command::Registry(RegistryCommand::List { resource_group }) => commands::registry_list(&c, resource_group.as_deref(), out).await,
        Command::Registry(RegistryCommand::Update { name, resource_group, set, remove }) => {
            commands::registry_update(&c, &name, &rg(resource_group), &set, &remove, out).await
        }
        Command::Registry(RegistryCommand::Delete { name, resource_group, yes }) => {
            commands::registry_delete(&c, &name, &rg(resource_group), yes).await
        }
        Command::Registry(RegistryCommand::PrivateEndpointConnection(cmd)) => network::run_registry_connections(&c, cmd, out).await,
        Command::Network(cmd) => network::run(&c, cmd, out).await,
        Command::Storage(StorageCommand::Gc { dry_run }) => {
            let path = format!(
                "/subscriptions/{}/providers/Moat.Storage/garbageCollection?dryRun={dry_run}&api-version=2025-09-01",
                c.profile().subscription_id
            );
            // A collection answers when it is over: listing a large object store takes minutes.
            let v = c.send_waiting(moat_client::Method::POST, &path, None, std::time::Duration::from_secs(12 * 3600)).await?.body;
            output::print(
                out,
                &v,
                &[
                    ("DryRun", "/dryRun"),
                    ("Files", "/files"),
                    ("Removed", "/removed"),
                    ("RemovedBytes", "/removedBytes"),
                    ("Kept", "/kept"),
                    ("GraceSeconds", "/graceSeconds"),
                ],
            );
            Ok(())
        }
        Command::Storage(StorageCommand::Account(StorageAccountCommand::Update(s))) => {
            network::update_settings(&c, "storage", s, out).await
        }
        Command::Acr(AcrCommand::Update(s)) => network::update_settings(&c, "acr", s, out).await,
        Command::Acr(AcrCommand::Login { registry_name, resource_group, .. }) => {
            network::acr_login(&c, &registry_name, resource_group.as_deref(), out).await
        }
    }
}

async fn run_asset(c: &Client, kind: assets::Kind, cmd: AssetCommand, out: Output) -> Result<(), CliError> {
    let target = |w: &AssetWhere| {
        assets::Target::new(c, kind, &w.name, w.version.as_deref(), w.registry_name.as_deref(), w.resource_group.as_deref())
    };
    match cmd {
        AssetCommand::Create { file, registry_name, resource_group } => {
            assets::create(c, kind, &file, &registry_name, resource_group.as_deref(), out).await
        }
        AssetCommand::Show(w) => assets::show(c, kind, &target(&w)?, out).await,
        AssetCommand::List { name, registry_name, resource_group, archived_only } => {
            let t = assets::Target::new(c, kind, name.as_deref().unwrap_or(""), None, Some(&registry_name), resource_group.as_deref())?;
            assets::list(c, kind, &t, archived_only, out).await
        }
        AssetCommand::Archive(w) => assets::archive(c, kind, &target(&w)?, true, out).await,
        AssetCommand::Restore(w) => assets::archive(c, kind, &target(&w)?, false, out).await,
        AssetCommand::Update { at, set } => assets::update(c, kind, &target(&at)?, &set, out).await,
        AssetCommand::Delete(w) => assets::delete(c, kind, &target(&w)?).await,
        AssetCommand::Download { at, download_path } => assets::download(c, kind, &target(&at)?, &download_path).await,
    }
}

fn main() -> ExitCode {
    moat_alloc::tune();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        moat_alloc::serving();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Openapi => {
            output::emit(&moat_api::openapi_json());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            let cfg = match serve_config(args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
            match runtime.block_on(serve::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => match runtime.block_on(run_client(cli)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
