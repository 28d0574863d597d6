//! `moat network …` (virtual networks, subnets, private endpoints, private endpoint
//! connections), `moat registry private-endpoint-connection …`, and the network settings of a
//! registry's storage accounts and container registry — shaped like `az network`.

use clap::Subcommand;
use moat_client::{Client, Method};
use serde_json::{Value, json};

use crate::commands::{CliError, CmdResult, registry_path};
use crate::output::{self, Column, Output};

const VNET_COLUMNS: &[Column] = &[
    ("Name", "/name"),
    ("Location", "/location"),
    ("AddressPrefixes", "/properties/addressSpace/addressPrefixes"),
    ("Binding", "/properties/binding/mode"),
];
const SUBNET_COLUMNS: &[Column] = &[("Name", "/name"), ("AddressPrefix", "/properties/addressPrefix")];
const ENDPOINT_COLUMNS: &[Column] = &[
    ("Name", "/name"),
    ("Address", "/properties/customDnsConfigs/0/ipAddresses/0"),
    ("ServiceUrl", "/properties/serviceUrl"),
    ("GroupId", "/connection/properties/groupIds/0"),
    ("Status", "/connection/properties/privateLinkServiceConnectionState/status"),
    ("Target", "/connection/properties/privateLinkServiceId"),
];
const CONNECTION_COLUMNS: &[Column] = &[
    ("Name", "/name"),
    ("GroupId", "/properties/groupIds/0"),
    ("Status", "/properties/privateLinkServiceConnectionState/status"),
    ("Description", "/properties/privateLinkServiceConnectionState/description"),
    ("PrivateEndpoint", "/properties/privateEndpoint/id"),
];

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Manage virtual networks.
    #[command(subcommand)]
    Vnet(VnetCommand),
    /// Manage private endpoints.
    #[command(subcommand)]
    PrivateEndpoint(EndpointCommand),
    /// Decide private endpoint connections to any resource (the provider side), by ID.
    #[command(subcommand)]
    PrivateEndpointConnection(ConnectionCommand),
    /// Private DNS zones, their virtual network links and record sets.
    #[command(subcommand)]
    PrivateDns(PrivateDnsCommand),
    /// For each plane of a registry: can a client there reach it, how, and if not, what is missing.
    #[command(
        after_help = "Examples:\n  moat network diagnose --registry-name demo                         # from the public network\n  moat network diagnose --registry-name demo --from-vnet vnet1\n  moat --source-address 127.77.1.50 network diagnose --registry-name demo --output table"
    )]
    Diagnose {
        #[arg(long)]
        registry_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// A virtual network (name in the resource group, or ID) the client is in.
        #[arg(long)]
        from_vnet: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum VnetCommand {
    /// Create (or update) a virtual network, optionally with its first subnet.
    #[command(
        after_help = "Examples:\n  moat network vnet create --name vnet1 --address-prefixes 127.10.0.0/16 --subnet-name s1 --subnet-prefixes 127.10.1.0/24\n  moat network vnet create --name vnet2 --address-prefixes 10.20.0.0/16 --binding namespace --namespace ns-a"
    )]
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Address space prefixes (CIDR); in loopback mode inside 127.0.0.0/8.
        #[arg(long, num_args = 1.., required = true)]
        address_prefixes: Vec<String>,
        #[arg(long)]
        subnet_name: Option<String>,
        #[arg(long, num_args = 1..)]
        subnet_prefixes: Vec<String>,
        /// Which real network it is: loopback (default), namespace or host.
        #[arg(long, default_value = "loopback", value_parser = ["loopback", "namespace", "host"])]
        binding: String,
        /// The network namespace (namespace binding; default: the network's name).
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long, short = 'l', default_value = "eastus")]
        location: String,
    },
    /// Show a virtual network.
    #[command(after_help = "Example:\n  moat network vnet show --name vnet1")]
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// List virtual networks (in a group, or in the subscription).
    #[command(after_help = "Example:\n  moat network vnet list --output table")]
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a virtual network (refused while it holds private endpoints).
    #[command(after_help = "Example:\n  moat network vnet delete --name vnet1")]
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Manage the subnets of a virtual network.
    #[command(subcommand)]
    Subnet(SubnetCommand),
}

#[derive(Subcommand, Debug)]
pub enum SubnetCommand {
    /// Create (or update) a subnet.
    #[command(after_help = "Example:\n  moat network vnet subnet create --vnet-name vnet1 --name s2 --address-prefixes 127.10.2.0/24")]
    Create {
        #[arg(long)]
        vnet_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long)]
        address_prefixes: String,
    },
    /// List the subnets of a virtual network.
    #[command(after_help = "Example:\n  moat network vnet subnet list --vnet-name vnet1 --output table")]
    List {
        #[arg(long)]
        vnet_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a subnet (refused while it holds private endpoints).
    #[command(after_help = "Example:\n  moat network vnet subnet delete --vnet-name vnet1 --name s2")]
    Delete {
        #[arg(long)]
        vnet_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PrivateDnsCommand {
    /// Manage private DNS zones (moat's privatelink zones, e.g. privatelink.blob.moat.internal).
    #[command(subcommand)]
    Zone(ZoneCommand),
    /// Link zones to virtual networks: queries from a linked network get the zone's records.
    #[command(subcommand)]
    Link(LinkCommand),
    /// The records of a zone.
    #[command(subcommand)]
    RecordSet(RecordSetCommand),
}

#[derive(Subcommand, Debug)]
pub enum ZoneCommand {
    /// Create a private DNS zone.
    #[command(after_help = "Example:\n  moat network private-dns zone create --name privatelink.blob.moat.internal")]
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Show a private DNS zone.
    #[command(after_help = "Example:\n  moat network private-dns zone show --name privatelink.blob.moat.internal")]
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// List private DNS zones.
    #[command(after_help = "Example:\n  moat network private-dns zone list --output table")]
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a private DNS zone (refused while networks link it).
    #[command(after_help = "Example:\n  moat network private-dns zone delete --name privatelink.blob.moat.internal")]
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum LinkCommand {
    /// Links to virtual networks.
    #[command(subcommand)]
    Vnet(LinkVnetCommand),
}

#[derive(Subcommand, Debug)]
pub enum LinkVnetCommand {
    /// Link a zone to a virtual network.
    #[command(
        after_help = "Example:\n  moat network private-dns link vnet create --zone-name privatelink.blob.moat.internal --name vnet1-link --virtual-network vnet1"
    )]
    Create {
        #[arg(long, short = 'z')]
        zone_name: String,
        #[arg(long, short = 'n')]
        name: String,
        /// The virtual network: its name (in the resource group) or ID.
        #[arg(long, short = 'v')]
        virtual_network: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// List a zone's links.
    #[command(after_help = "Example:\n  moat network private-dns link vnet list --zone-name privatelink.blob.moat.internal")]
    List {
        #[arg(long, short = 'z')]
        zone_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Remove a link.
    #[command(
        after_help = "Example:\n  moat network private-dns link vnet delete --zone-name privatelink.blob.moat.internal --name vnet1-link"
    )]
    Delete {
        #[arg(long, short = 'z')]
        zone_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RecordSetCommand {
    /// List a zone's records (the A records of the endpoints' zone groups).
    #[command(
        after_help = "Example:\n  moat network private-dns record-set list --zone-name privatelink.blob.moat.internal --output table"
    )]
    List {
        #[arg(long, short = 'z')]
        zone_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ZoneGroupCommand {
    /// Put a private endpoint's records into private DNS zones.
    #[command(
        after_help = "Example:\n  moat network private-endpoint dns-zone-group create --endpoint-name pe-blob --name default --private-dns-zone privatelink.blob.moat.internal"
    )]
    Create {
        #[arg(long)]
        endpoint_name: String,
        #[arg(long, short = 'n')]
        name: String,
        /// The zone: its name (in the resource group) or ID.
        #[arg(long)]
        private_dns_zone: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// List a private endpoint's DNS zone groups.
    #[command(after_help = "Example:\n  moat network private-endpoint dns-zone-group list --endpoint-name pe-blob")]
    List {
        #[arg(long)]
        endpoint_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a DNS zone group: the endpoint's records leave the zones.
    #[command(after_help = "Example:\n  moat network private-endpoint dns-zone-group delete --endpoint-name pe-blob --name default")]
    Delete {
        #[arg(long)]
        endpoint_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Manage the endpoint's DNS zone groups.
    #[command(subcommand)]
    DnsZoneGroup(ZoneGroupCommand),
    /// Create a private endpoint in a subnet to a registry (amlregistry), one of its storage
    /// accounts (blob) or its container registry (registry).
    #[command(
        after_help = "Examples:\n  moat network private-endpoint create --name pe1 --vnet-name vnet1 --subnet s1 \\\n      --private-connection-resource-id /subscriptions/SUB/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries/demo --group-id amlregistry\n  moat network private-endpoint create ... --manual-request --request-message 'team A needs read access'"
    )]
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long)]
        vnet_name: String,
        #[arg(long)]
        subnet: String,
        #[arg(long)]
        private_connection_resource_id: String,
        #[arg(long, value_parser = ["amlregistry", "blob", "registry"])]
        group_id: String,
        /// The connection's name (default: <name>-connection).
        #[arg(long)]
        connection_name: Option<String>,
        #[arg(long)]
        request_message: Option<String>,
        /// Ask the target's owner for approval instead of approving it yourself.
        #[arg(long)]
        manual_request: bool,
    },
    /// Show a private endpoint, with its address and its listener URL.
    #[command(after_help = "Example:\n  moat network private-endpoint show --name pe1")]
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// List private endpoints.
    #[command(after_help = "Example:\n  moat network private-endpoint list --output table")]
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a private endpoint; its listener closes.
    #[command(after_help = "Example:\n  moat network private-endpoint delete --name pe1")]
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConnectionCommand {
    /// List the private endpoint connections of a registry, storage account or container registry.
    #[command(
        after_help = "Example:\n  moat network private-endpoint-connection list --id /subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Storage/storageAccounts/abc"
    )]
    List {
        #[arg(long)]
        id: String,
    },
    /// Approve a connection (its ID ends with /privateEndpointConnections/<name>).
    #[command(after_help = "Example:\n  moat network private-endpoint-connection approve --id ID --description 'ok'")]
    Approve {
        #[arg(long)]
        id: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Reject a connection.
    #[command(after_help = "Example:\n  moat network private-endpoint-connection reject --id ID --description 'not this team'")]
    Reject {
        #[arg(long)]
        id: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a connection: the endpoint stays, Disconnected.
    #[command(after_help = "Example:\n  moat network private-endpoint-connection delete --id ID")]
    Delete {
        #[arg(long)]
        id: String,
    },
}

/// `moat registry private-endpoint-connection …`: the same, named by registry.
#[derive(Subcommand, Debug)]
pub enum RegistryConnectionCommand {
    /// List the connections to a registry.
    #[command(after_help = "Example:\n  moat registry private-endpoint-connection list --registry-name demo")]
    List {
        #[arg(long)]
        registry_name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Approve a connection to a registry.
    #[command(after_help = "Example:\n  moat registry private-endpoint-connection approve --registry-name demo --name pe1-connection")]
    Approve {
        #[arg(long)]
        registry_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Reject a connection to a registry.
    #[command(after_help = "Example:\n  moat registry private-endpoint-connection reject --registry-name demo --name pe1-connection")]
    Reject {
        #[arg(long)]
        registry_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a connection to a registry (the endpoint becomes Disconnected).
    #[command(after_help = "Example:\n  moat registry private-endpoint-connection delete --registry-name demo --name pe1-connection")]
    Delete {
        #[arg(long)]
        registry_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
}

/// `moat storage account update` / `moat acr update`: network settings of a registry's
/// managed storage accounts or container registry.
#[derive(clap::Args, Debug)]
pub struct NetworkSettings {
    /// The resource's ID; or give --registry-name to change all of that registry's.
    #[arg(long, conflicts_with = "registry_name")]
    pub id: Option<String>,
    #[arg(long)]
    pub registry_name: Option<String>,
    #[arg(long, short = 'g')]
    pub resource_group: Option<String>,
    /// Enabled, Disabled, or Inherit (follow the registry's switch).
    #[arg(long, value_parser = ["Enabled", "Disabled", "Inherit"])]
    pub public_network_access: Option<String>,
    /// Firewall for public traffic (storage accounts): Allow or Deny by default.
    #[arg(long, value_parser = ["Allow", "Deny"])]
    pub default_action: Option<String>,
    /// With --default-action Deny: addresses or CIDR ranges let through.
    #[arg(long, num_args = 1..)]
    pub ip_rules: Vec<String>,
}

fn rg(c: &Client, g: &Option<String>) -> String {
    g.clone().unwrap_or_else(|| c.profile().resource_group.clone())
}

fn net_path(c: &Client, group: &str) -> String {
    format!("{}/providers/Microsoft.Network", crate::commands::group_path(c, group))
}

/// Adds `connection` (the endpoint's one connection, automatic or manual) for table output.
fn with_connection(mut v: Value) -> Value {
    let p = &v["properties"];
    let conn = p["privateLinkServiceConnections"]
        .get(0)
        .or_else(|| p["manualPrivateLinkServiceConnections"].get(0))
        .cloned()
        .unwrap_or(Value::Null);
    v["connection"] = conn;
    v
}

pub async fn run(c: &Client, cmd: NetworkCommand, out: Output) -> CmdResult {
    match cmd {
        NetworkCommand::Vnet(VnetCommand::Create {
            name,
            resource_group,
            address_prefixes,
            subnet_name,
            subnet_prefixes,
            binding,
            namespace,
            location,
        }) => {
            let subnets: Vec<Value> = match (subnet_name, subnet_prefixes.as_slice()) {
                (Some(n), [p]) => vec![json!({"name": n, "properties": {"addressPrefix": p}})],
                (None, []) => vec![],
                _ => return Err(CliError::Usage("give --subnet-name with exactly one --subnet-prefixes, or neither".into())),
            };
            let mode = match binding.as_str() {
                "namespace" => "Namespace",
                "host" => "Host",
                _ => "Loopback",
            };
            let mut b = json!({"mode": mode});
            if let Some(ns) = namespace {
                b["namespace"] = json!(ns);
            }
            let body = json!({"location": location, "properties": {"addressSpace": {"addressPrefixes": address_prefixes}, "subnets": subnets, "binding": b}});
            let v =
                c.send(Method::PUT, &format!("{}/virtualNetworks/{name}", net_path(c, &rg(c, &resource_group))), Some(&body), &[]).await?;
            output::print(out, &v.body, VNET_COLUMNS);
        }
        NetworkCommand::Vnet(VnetCommand::Show { name, resource_group }) => {
            let v = c.get(&format!("{}/virtualNetworks/{name}", net_path(c, &rg(c, &resource_group)))).await?;
            output::print(out, &v.body, VNET_COLUMNS);
        }
        NetworkCommand::Vnet(VnetCommand::List { resource_group }) => {
            let path = match resource_group {
                Some(g) => format!("{}/virtualNetworks", net_path(c, &g)),
                None => format!("/subscriptions/{}/providers/Microsoft.Network/virtualNetworks", c.profile().subscription_id),
            };
            output::print(out, &Value::Array(c.list_all(&path).await?), VNET_COLUMNS);
        }
        NetworkCommand::Vnet(VnetCommand::Delete { name, resource_group }) => {
            c.send(Method::DELETE, &format!("{}/virtualNetworks/{name}", net_path(c, &rg(c, &resource_group))), None, &[]).await?;
        }
        NetworkCommand::Vnet(VnetCommand::Subnet(SubnetCommand::Create { vnet_name, name, resource_group, address_prefixes })) => {
            let path = format!("{}/virtualNetworks/{vnet_name}/subnets/{name}", net_path(c, &rg(c, &resource_group)));
            let v = c.send(Method::PUT, &path, Some(&json!({"properties": {"addressPrefix": address_prefixes}})), &[]).await?;
            output::print(out, &v.body, SUBNET_COLUMNS);
        }
        NetworkCommand::Vnet(VnetCommand::Subnet(SubnetCommand::List { vnet_name, resource_group })) => {
            let path = format!("{}/virtualNetworks/{vnet_name}/subnets", net_path(c, &rg(c, &resource_group)));
            output::print(out, &Value::Array(c.list_all(&path).await?), SUBNET_COLUMNS);
        }
        NetworkCommand::Vnet(VnetCommand::Subnet(SubnetCommand::Delete { vnet_name, name, resource_group })) => {
            let path = format!("{}/virtualNetworks/{vnet_name}/subnets/{name}", net_path(c, &rg(c, &resource_group)));
            c.send(Method::DELETE, &path, None, &[]).await?;
        }
        NetworkCommand::PrivateEndpoint(EndpointCommand::Create {
            name,
            resource_group,
            vnet_name,
            subnet,
            private_connection_resource_id,
            group_id,
            connection_name,
            request_message,
            manual_request,
        }) => {
            let base = net_path(c, &rg(c, &resource_group));
            let list = if manual_request { "manualPrivateLinkServiceConnections" } else { "privateLinkServiceConnections" };
            let body = json!({"properties": {
                "subnet": {"id": format!("{base}/virtualNetworks/{vnet_name}/subnets/{subnet}")},
                list: [{"name": connection_name.unwrap_or_else(|| format!("{name}-connection")), "properties": {
                    "privateLinkServiceId": private_connection_resource_id, "groupIds": [group_id], "requestMessage": request_message}}]}});
            let path = format!("{base}/privateEndpoints/{name}");
            c.send(Method::PUT, &path, Some(&body), &[]).await?;
            // The listener opens right after; show the endpoint once it reports where.
            let mut v = c.get(&path).await?.body;
            for _ in 0..50 {
                if v["properties"]["serviceUrl"].is_string() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                v = c.get(&path).await?.body;
            }
            output::print(out, &with_connection(v), ENDPOINT_COLUMNS);
        }
        NetworkCommand::PrivateEndpoint(EndpointCommand::Show { name, resource_group }) => {
            let v = c.get(&format!("{}/privateEndpoints/{name}", net_path(c, &rg(c, &resource_group)))).await?;
            output::print(out, &with_connection(v.body), ENDPOINT_COLUMNS);
        }
        NetworkCommand::PrivateEndpoint(EndpointCommand::List { resource_group }) => {
            let path = match resource_group {
                Some(g) => format!("{}/privateEndpoints", net_path(c, &g)),
                None => format!("/subscriptions/{}/providers/Microsoft.Network/privateEndpoints", c.profile().subscription_id),
            };
            let items = c.list_all(&path).await?.into_iter().map(with_connection).collect();
            output::print(out, &Value::Array(items), ENDPOINT_COLUMNS);
        }
        NetworkCommand::PrivateEndpoint(EndpointCommand::Delete { name, resource_group }) => {
            c.send(Method::DELETE, &format!("{}/privateEndpoints/{name}", net_path(c, &rg(c, &resource_group))), None, &[]).await?;
        }
        NetworkCommand::PrivateDns(cmd) => private_dns(c, cmd, out).await?,
        NetworkCommand::PrivateEndpoint(EndpointCommand::DnsZoneGroup(cmd)) => zone_groups(c, cmd, out).await?,
        NetworkCommand::Diagnose { registry_name, resource_group, from_vnet } => {
            let group = rg(c, &resource_group);
            let mut body = json!({});
            if let Some(v) = from_vnet {
                body["virtualNetworkId"] =
                    json!(if v.starts_with('/') { v } else { format!("{}/virtualNetworks/{v}", net_path(c, &group)) });
            } else if let Some(a) = c.source() {
                body["sourceAddress"] = json!(a.to_string());
            }
            let d = c
                .send(Method::POST, &format!("{}/diagnoseNetwork", registry_path(c, &group, &registry_name)), Some(&body), &[])
                .await?
                .body;
            match out {
                Output::Json => output::print(out, &d, &[]),
                Output::Table => {
                    let rows: Vec<Value> = d["planes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            let mut p = p.clone();
                            let findings: Vec<&str> = p["findings"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).collect();
                            p["why"] = json!(findings.join(" | "));
                            p["resource"] = json!(p["resourceId"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default());
                            let names: Vec<String> = p["dns"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|n| {
                                    format!("{} -> {}", n["name"].as_str().unwrap_or_default(), n["answer"].as_str().unwrap_or_default())
                                })
                                .collect();
                            p["names"] = json!(names.join(", "));
                            p
                        })
                        .collect();
                    output::emit(&format!("from {} {}\n", d["sourceAddress"].as_str().unwrap_or_default(), d["virtualNetworks"]));
                    output::print(
                        out,
                        &Value::Array(rows),
                        &[
                            ("Plane", "/groupId"),
                            ("Resource", "/resource"),
                            ("Reachable", "/reachable"),
                            ("Path", "/path"),
                            ("Via", "/serviceUrl"),
                            ("DNS", "/names"),
                            ("Why not", "/why"),
                        ],
                    );
                    for p in d["planes"].as_array().into_iter().flatten() {
                        for f in p["dnsFindings"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
                            output::emit(&format!("DNS: {f}\n"));
                        }
                    }
                }
            }
        }
        NetworkCommand::PrivateEndpointConnection(cmd) => match cmd {
            ConnectionCommand::List { id } => list_connections(c, &id, out).await?,
            ConnectionCommand::Approve { id, description } => decide(c, &id, "Approved", description, out).await?,
            ConnectionCommand::Reject { id, description } => decide(c, &id, "Rejected", description, out).await?,
            ConnectionCommand::Delete { id } => {
                c.send(Method::DELETE, &id, None, &[]).await?;
            }
        },
    }
    Ok(())
}

async fn list_connections(c: &Client, resource_id: &str, out: Output) -> CmdResult {
    let items = c.list_all(&format!("{}/privateEndpointConnections", resource_id.trim_end_matches('/'))).await?;
    output::print(out, &Value::Array(items), CONNECTION_COLUMNS);
    Ok(())
}

async fn decide(c: &Client, connection_id: &str, status: &str, description: Option<String>, out: Output) -> CmdResult {
    if !connection_id.to_ascii_lowercase().contains("/privateendpointconnections/") {
        return Err(CliError::Usage(format!("'{connection_id}' is not a connection ID (…/privateEndpointConnections/<name>)")));
    }
    let body =
        json!({"properties": {"privateLinkServiceConnectionState": {"status": status, "description": description.unwrap_or_default()}}});
    let v = c.send(Method::PUT, connection_id, Some(&body), &[]).await?;
    output::print(out, &v.body, CONNECTION_COLUMNS);
    Ok(())
}

pub async fn run_registry_connections(c: &Client, cmd: RegistryConnectionCommand, out: Output) -> CmdResult {
    let conn =
        |reg: &str, g: &Option<String>, name: &str| format!("{}/privateEndpointConnections/{name}", registry_path(c, &rg(c, g), reg));
    match cmd {
        RegistryConnectionCommand::List { registry_name, resource_group } => {
            list_connections(c, &registry_path(c, &rg(c, &resource_group), &registry_name), out).await
        }
        RegistryConnectionCommand::Approve { registry_name, name, resource_group, description } => {
            decide(c, &conn(&registry_name, &resource_group, &name), "Approved", description, out).await
        }
        RegistryConnectionCommand::Reject { registry_name, name, resource_group, description } => {
            decide(c, &conn(&registry_name, &resource_group, &name), "Rejected", description, out).await
        }
        RegistryConnectionCommand::Delete { registry_name, name, resource_group } => {
            c.send(Method::DELETE, &conn(&registry_name, &resource_group, &name), None, &[]).await?;
            Ok(())
        }
    }
}

/// Applies network settings to a storage account or container registry (`kind`: "storage" or
/// "acr"), named by ID or through its registry.
/// `moat acr login --expose-token`.
pub async fn acr_login(c: &Client, registry: &str, group: Option<&str>, out: Output) -> CmdResult {
    let reg = c.get(&registry_path(c, &rg(c, &group.map(str::to_string)), registry)).await?.body;
    let acr_id = reg["properties"]["regionDetails"][0]["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"]
        .as_str()
        .ok_or_else(|| CliError::Usage(format!("registry '{registry}' has no container registry")))?
        .to_string();
    let acr = c.get(&acr_id).await?.body;
    let name = acr["name"].as_str().unwrap_or_default();
    let endpoint = c.profile().endpoint.clone();
    let host = endpoint.split_once("://").map_or(endpoint.as_str(), |(_, h)| h).trim_end_matches('/');
    let token = c.get_token(moat_client::AUDIENCE_MANAGEMENT).await?;
    let v = json!({
        "loginServer": acr["properties"]["loginServer"],
        "imagePrefix": format!("{host}/{name}"),
        "username": "00000000-0000-0000-0000-000000000000",
        "accessToken": token.access_token,
    });
    output::print(out, &v, &[("LoginServer", "/loginServer"), ("ImagePrefix", "/imagePrefix"), ("Username", "/username")]);
    Ok(())
}

pub async fn update_settings(c: &Client, kind: &str, s: NetworkSettings, out: Output) -> CmdResult {
    let ids: Vec<String> = match (&s.id, &s.registry_name) {
        (Some(id), _) => vec![id.clone()],
        (None, Some(r)) => {
            let reg = c.get(&registry_path(c, &rg(c, &s.resource_group), r)).await?.body;
            let mut ids = Vec::new();
            for region in reg["properties"]["regionDetails"].as_array().into_iter().flatten() {
                let found: Vec<&Value> = if kind == "storage" {
                    region["storageAccountDetails"].as_array().into_iter().flatten().map(|d| &d["systemCreatedStorageAccount"]).collect()
                } else {
                    region["acrDetails"].as_array().into_iter().flatten().map(|d| &d["systemCreatedAcrAccount"]).collect()
                };
                for d in found {
                    if let Some(id) = d["armResourceId"]["resourceId"].as_str()
                        && !ids.iter().any(|x: &String| x.eq_ignore_ascii_case(id))
                    {
                        ids.push(id.to_string());
                    }
                }
            }
            ids
        }
        (None, None) => return Err(CliError::Usage("give --id or --registry-name".into())),
    };
    let mut props = serde_json::Map::new();
    if let Some(p) = &s.public_network_access {
        props.insert("publicNetworkAccess".into(), if p == "Inherit" { Value::Null } else { json!(p) });
    }
    if let Some(a) = &s.default_action {
        if kind != "storage" {
            return Err(CliError::Usage("--default-action and --ip-rules apply to storage accounts".into()));
        }
        let rules: Vec<Value> = s.ip_rules.iter().map(|r| json!({"value": r, "action": "Allow"})).collect();
        props.insert("networkAcls".into(), json!({"defaultAction": a, "ipRules": rules}));
    } else if !s.ip_rules.is_empty() {
        return Err(CliError::Usage("--ip-rules needs --default-action Deny".into()));
    }
    if props.is_empty() {
        return Err(CliError::Usage("nothing to change: give --public-network-access and/or --default-action".into()));
    }
    let mut results = Vec::new();
    for id in ids {
        results.push(c.send(Method::PATCH, &id, Some(&json!({"properties": props})), &[]).await?.body);
    }
    output::print(out, &Value::Array(results), &[("Name", "/name"), ("PublicNetworkAccess", "/properties/publicNetworkAccess")]);
    Ok(())
}

const ZONE_COLUMNS: &[Column] =
    &[("Name", "/name"), ("Records", "/properties/numberOfRecordSets"), ("Links", "/properties/numberOfVirtualNetworkLinks")];
const LINK_COLUMNS: &[Column] = &[("Name", "/name"), ("VirtualNetwork", "/properties/virtualNetwork/id")];
const RECORD_COLUMNS: &[Column] = &[("Name", "/name"), ("Fqdn", "/properties/fqdn"), ("Address", "/properties/aRecords/0/ipv4Address")];

fn zone_path(c: &Client, g: &Option<String>, zone: &str) -> String {
    if zone.starts_with('/') { zone.to_string() } else { format!("{}/privateDnsZones/{zone}", net_path(c, &rg(c, g))) }
}

async fn private_dns(c: &Client, cmd: PrivateDnsCommand, out: Output) -> CmdResult {
    match cmd {
        PrivateDnsCommand::Zone(ZoneCommand::Create { name, resource_group }) => {
            let v = c.send(Method::PUT, &zone_path(c, &resource_group, &name), Some(&json!({"location": "global"})), &[]).await?;
            output::print(out, &v.body, ZONE_COLUMNS);
        }
        PrivateDnsCommand::Zone(ZoneCommand::Show { name, resource_group }) => {
            output::print(out, &c.get(&zone_path(c, &resource_group, &name)).await?.body, ZONE_COLUMNS);
        }
        PrivateDnsCommand::Zone(ZoneCommand::List { resource_group }) => {
            let items = c.list_all(&format!("{}/privateDnsZones", net_path(c, &rg(c, &resource_group)))).await?;
            output::print(out, &Value::Array(items), ZONE_COLUMNS);
        }
        PrivateDnsCommand::Zone(ZoneCommand::Delete { name, resource_group }) => {
            c.send(Method::DELETE, &zone_path(c, &resource_group, &name), None, &[]).await?;
        }
        PrivateDnsCommand::Link(LinkCommand::Vnet(LinkVnetCommand::Create { zone_name, name, virtual_network, resource_group })) => {
            let vnet = if virtual_network.starts_with('/') {
                virtual_network
            } else {
                format!("{}/virtualNetworks/{virtual_network}", net_path(c, &rg(c, &resource_group)))
            };
            let body = json!({"location": "global", "properties": {"virtualNetwork": {"id": vnet}, "registrationEnabled": false}});
            let path = format!("{}/virtualNetworkLinks/{name}", zone_path(c, &resource_group, &zone_name));
            output::print(out, &c.send(Method::PUT, &path, Some(&body), &[]).await?.body, LINK_COLUMNS);
        }
        PrivateDnsCommand::Link(LinkCommand::Vnet(LinkVnetCommand::List { zone_name, resource_group })) => {
            let items = c.list_all(&format!("{}/virtualNetworkLinks", zone_path(c, &resource_group, &zone_name))).await?;
            output::print(out, &Value::Array(items), LINK_COLUMNS);
        }
        PrivateDnsCommand::Link(LinkCommand::Vnet(LinkVnetCommand::Delete { zone_name, name, resource_group })) => {
            c.send(Method::DELETE, &format!("{}/virtualNetworkLinks/{name}", zone_path(c, &resource_group, &zone_name)), None, &[]).await?;
        }
        PrivateDnsCommand::RecordSet(RecordSetCommand::List { zone_name, resource_group }) => {
            let items = c.list_all(&format!("{}/ALL", zone_path(c, &resource_group, &zone_name))).await?;
            output::print(out, &Value::Array(items), RECORD_COLUMNS);
        }
    }
    Ok(())
}

async fn zone_groups(c: &Client, cmd: ZoneGroupCommand, out: Output) -> CmdResult {
    let cols: &[Column] = &[("Name", "/name"), ("Zone", "/properties/privateDnsZoneConfigs/0/properties/privateDnsZoneId")];
    match cmd {
        ZoneGroupCommand::Create { endpoint_name, name, private_dns_zone, resource_group } => {
            let zone = zone_path(c, &resource_group, &private_dns_zone);
            let config = zone.rsplit('/').next().unwrap_or_default().replace('.', "-");
            let body = json!({"properties": {"privateDnsZoneConfigs": [{"name": config, "properties": {"privateDnsZoneId": zone}}]}});
            let path = format!("{}/privateEndpoints/{endpoint_name}/privateDnsZoneGroups/{name}", net_path(c, &rg(c, &resource_group)));
            output::print(out, &c.send(Method::PUT, &path, Some(&body), &[]).await?.body, cols);
        }
        ZoneGroupCommand::List { endpoint_name, resource_group } => {
            let path = format!("{}/privateEndpoints/{endpoint_name}/privateDnsZoneGroups", net_path(c, &rg(c, &resource_group)));
            output::print(out, &Value::Array(c.list_all(&path).await?), cols);
        }
        ZoneGroupCommand::Delete { endpoint_name, name, resource_group } => {
            let path = format!("{}/privateEndpoints/{endpoint_name}/privateDnsZoneGroups/{name}", net_path(c, &rg(c, &resource_group)));
            c.send(Method::DELETE, &path, None, &[]).await?;
        }
    }
    Ok(())
}
