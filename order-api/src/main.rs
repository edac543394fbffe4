use drop_contract::env::Env;
use order_api::{config::Config, startup, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Configuration first, so the log format it names applies to every line;
    // a bad variable is reported on stderr, naming it, before any log exists.
    let config = match Config::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("order-api: refusing to start: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init_logging(config.json_logs);
    if config.admin_token_generated {
        // The token itself never prints: set ADMIN_TOKEN to use the admin API.
        tracing::warn!(
            "ADMIN_TOKEN is unset; APP_PROFILE=dev generated a random one for this process"
        );
    }
    let app = match startup::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("order-api failed to start: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match app.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("order-api failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
