//! `funmatch models`: the zoo and the registered architectures.

use clap::Args;
use funmatch_models::{param_specs, ARCHITECTURES};

use crate::zoo;

/// Arguments of `funmatch models`.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let entries = zoo::entries()?;
    let archs: Vec<(&str, usize)> = ARCHITECTURES
        .iter()
        .map(|a| {
            (
                a.name,
                param_specs(&a.config(1000))
                    .iter()
                    .map(|s| s.shape.iter().product::<usize>())
                    .sum(),
            )
        })
        .collect();

    if args.json {
        let zoo: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name, "role": e.role, "hub": e.hub, "folder": e.folder,
                    "architecture": e.architecture, "license": e.license,
                    "input_size": e.input_size, "crop_pct": e.crop_pct,
                    "interpolation": e.interpolation, "recipe": e.recipe, "results": e.results,
                })
            })
            .collect();
        let archs: Vec<_> = archs
            .iter()
            .map(|(name, params)| serde_json::json!({ "name": name, "param_count": params }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "zoo": zoo, "architectures": archs })
            )?
        );
        return Ok(());
    }

    println!("{:<52} {:<8} {:<20} {:>6}  source", "zoo model", "role", "architecture", "top-1");
    for e in &entries {
        let top1 = e.results.get("imagenet").map(|v| format!("{v:.2}")).unwrap_or_default();
        let source = e
            .hub
            .clone()
            .or_else(|| e.folder.clone().map(|f| format!("models/{f}")))
            .unwrap_or_default();
        println!("{:<52} {:<8} {:<20} {:>6}  {source}", e.name, e.role, e.architecture, top1);
    }
    println!();
    println!("{:<22} {:>12}", "architecture", "params");
    // Parameter counts with the 1000-class ImageNet head.
    for (name, params) in archs {
        println!("{name:<22} {:>11.1}M", params as f64 / 1e6);
    }
    Ok(())
}
