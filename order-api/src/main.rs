use order_api::{
    config::{Config, ProcessEnv},
    startup, telemetry,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let json_logs = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    telemetry::init_logging(json_logs);
    let config = match Config::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("order-api: {e:#}");
            tracing::error!("refusing to start: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match startup::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("order-api failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
