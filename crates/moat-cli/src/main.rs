//! `moat`: the server (`moat serve`) and its client, modelled on `az ml` and `az`.

mod commands;
mod config;
mod generic;
mod output;
mod serve;
mod yaml;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use moat_client::{Client, Profile};

use crate::commands::CliError;
use crate::config::FileConfig;
use crate::output::Output;

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
    /// Print the OpenAPI document of moat's REST API.
    #[command(after_help = "Example:\n  moat openapi > openapi.json")]
    Openapi,
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
    /// Base URL clients use to reach moat [env: MOAT_PUBLIC_URL].
    #[arg(long)]
    public_url: Option<String>,
    /// DNS zone under which resources are named [env: MOAT_DNS_ZONE].
    #[arg(long)]
    dns_zone: Option<String>,
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
    /// Show a registry with its managed resource group, storage accounts and container registry.
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
        public_url: args.public_url,
        dns_zone: args.dns_zone,
        ..FileConfig::default()
    };
    file.overlay(env).overlay(flags).validate()
}

fn client(profile: Option<PathBuf>) -> Result<Client, CliError> {
    let path = profile.unwrap_or_else(|| config::default_data_dir().join("profile.json"));
    let p =
        Profile::load(&path).map_err(|e| CliError::Usage(format!("{e}. Start `moat serve` (it writes the profile) or pass --profile")))?;
    Ok(Client::new(p)?)
}

async fn run_client(cli: Cli) -> Result<(), CliError> {
    let out = cli.output;
    let c = client(cli.profile)?;
    let rg = |g: Option<String>| g.unwrap_or_else(|| c.profile().resource_group.clone());
    match cli.command {
        Command::Serve(_) | Command::Openapi => Ok(()),
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
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Openapi => {
            print!("{}", moat_api::openapi_json());
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
