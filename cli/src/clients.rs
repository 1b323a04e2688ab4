//! `livora clients …`: tenants and their API keys.

use anyhow::{Context, Result};
use clap::Subcommand;
use livora_common::ClientId;
use livora_ingest::ClientStore;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Registers a client and prints its first API key (shown once; only a hash is kept).
    Create {
        /// The client id: lowercase letters, digits, '_' and '-'.
        client_id: ClientId,
    },
    /// Issues another API key for an existing client (for rotation).
    Key {
        /// The client id.
        client_id: ClientId,
    },
    /// Lists API keys (never the keys themselves).
    List {
        /// Only this client's keys.
        #[arg(long)]
        client: Option<ClientId>,
    },
    /// Revokes an API key by its id; running collectors refuse it within `clients.cache_ttl`.
    Revoke {
        /// The key id, as `livora clients list` shows it.
        key_id: String,
    },
}

pub async fn open(config: &Config) -> Result<ClientStore> {
    std::fs::create_dir_all(config.data_dir())
        .with_context(|| format!("cannot create the data directory {}", config.data_dir().display()))?;
    ClientStore::connect(&config.clients_url(), config.clients.cache_ttl)
        .await
        .context("cannot open the client registry")
}

pub async fn run(config: &Config, command: ClientsCommand) -> Result<()> {
    let store = open(config).await?;
    match command {
        ClientsCommand::Create { client_id } => {
            let key = store.create_client(&client_id).await?;
            println!("client:  {client_id}\nkey id:  {}\napi key: {}", key.key_id, key.secret);
            eprintln!("Keep the api key now: it is not stored and cannot be shown again.");
        }
        ClientsCommand::Key { client_id } => {
            let key = store.create_key(&client_id).await?;
            println!("client:  {client_id}\nkey id:  {}\napi key: {}", key.key_id, key.secret);
            eprintln!("Keep the api key now: it is not stored and cannot be shown again.");
        }
        ClientsCommand::List { client } => {
            let keys = store.list_keys(client.as_ref()).await?;
            println!("{:<22} {:<24} {:<14} {:<26} REVOKED", "KEY ID", "CLIENT", "PREFIX", "CREATED");
            for k in keys {
                println!(
                    "{:<22} {:<24} {:<14} {:<26} {}",
                    k.key_id,
                    k.client_id,
                    format!("{}…", k.prefix),
                    k.created_at,
                    k.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
        ClientsCommand::Revoke { key_id } => {
            store.revoke(&key_id).await?;
            println!("revoked {key_id}");
        }
    }
    Ok(())
}
