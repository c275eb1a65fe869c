//! `klagg replay` (main thread): aggregate data.binance.vision / REST aggTrades files into klines
//! with the engine's own kline core and print them in the official klines CSV format. Nothing is
//! written unless the whole input was read and aggregated without error.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use klagg_bench::replay::{ReplayOutput, ReplaySettings, aggregate_files, symbol_from_file_name};
use klagg_shards::kline::{Interval, KLINE_CSV_HEADER};

/// Flags of `klagg replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    klagg replay --intervals 1s virtualusdt-aggtrades.json\n  \
    klagg replay --intervals 1m,5m,1h --out-dir klines/ BTCUSDT-aggTrades-2026-01-0*.csv")]
pub struct ReplayArgs {
    /// aggTrades files in time order: data.binance.vision CSV (futures 7 columns or spot 8
    /// columns, with or without header, ms or µs times) or Binance REST JSON arrays.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Intervals to build, comma-separated (1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M).
    #[arg(long, default_value = "1m", value_parser = parse_intervals)]
    pub intervals: IntervalList,
    /// Symbol, where the file names don't say it (`BTCUSDT-aggTrades-…`); names the output files.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Write one file per interval (`<SYMBOL>-<interval>.csv`) into this directory instead of
    /// printing to stdout; required with several intervals.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Start the output with the official header row.
    #[arg(long)]
    pub header: bool,
    /// Decimal places of prices (default: as written in the data).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=18))]
    pub price_decimals: Option<u8>,
    /// Decimal places of quantities (default: as written in the data).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=18))]
    pub qty_decimals: Option<u8>,
    /// Print the klines even where trades are missing (aggregate-trade ids jump) or could not
    /// be aggregated (older than an already closed kline); without it either is an error.
    #[arg(long)]
    pub allow_gaps: bool,
}

/// A comma-separated interval list, as parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalList(pub Vec<Interval>);

fn parse_intervals(text: &str) -> Result<IntervalList, String> {
    Interval::parse_list(text)
        .map(IntervalList)
        .map_err(|err| err.to_string())
}

/// Entry point of `klagg replay`.
pub fn run(args: &ReplayArgs) -> ExitCode {
    match replay(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("klagg replay: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn replay(args: &ReplayArgs) -> Result<(), String> {
    let intervals = &args.intervals.0;
    if intervals.len() > 1 && args.out_dir.is_none() {
        return Err("several intervals need --out-dir (one file per interval)".into());
    }
    let symbol = match &args.out_dir {
        Some(_) => Some(output_symbol(args)?),
        None => args.symbol.clone(),
    };
    let settings = ReplaySettings {
        intervals: intervals.clone(),
        price_scale: args.price_decimals,
        qty_scale: args.qty_decimals,
    };
    let output = aggregate_files(&args.files, &settings).map_err(|err| err.to_string())?;
    report(&output, args.files.len(), args.allow_gaps)?;
    match (&args.out_dir, symbol) {
        (Some(dir), Some(symbol)) => write_files(dir, &symbol, &output, args.header),
        _ => {
            let text = render(&output, intervals[0], args.header);
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|err| format!("stdout: {err}"))
        }
    }
}

/// The symbol that names the output files: `--symbol`, or the one every file name announces.
fn output_symbol(args: &ReplayArgs) -> Result<String, String> {
    if let Some(symbol) = &args.symbol {
        return Ok(symbol.to_ascii_uppercase());
    }
    let mut names = args.files.iter().map(|file| symbol_from_file_name(file));
    let first = names.next().flatten();
    match first {
        Some(symbol) if names.all(|name| name.as_deref() == Some(symbol.as_str())) => Ok(symbol),
        _ => Err("cannot tell the symbol from the file names; give --symbol".into()),
    }
}

fn report(output: &ReplayOutput, files: usize, allow_gaps: bool) -> Result<(), String> {
    let klines: usize = output.klines.values().map(Vec::len).sum();
    eprintln!(
        "klagg replay: {} trades from {files} file(s) → {klines} klines (price decimals {}, quantity decimals {})",
        output.trades, output.scales.price, output.scales.qty
    );
    if output.duplicates > 0 {
        eprintln!(
            "klagg replay: warning: {} duplicate trades ignored",
            output.duplicates
        );
    }
    if let Some(at) = &output.first_late {
        let message = format!(
            "{} trade(s) out of time order (older than the open kline and the last closed one) could not be aggregated (first: {at})",
            output.late_dropped
        );
        if !allow_gaps {
            return Err(format!(
                "{message}; the klines would be incomplete (use --allow-gaps to print them anyway)"
            ));
        }
        eprintln!("klagg replay: warning: {message}");
    }
    if let Some((expected, received)) = output.gaps.first() {
        let message = format!(
            "{} aggregate-trade id gap(s) — trades are missing from the input (first: expected id {expected}, got {received})",
            output.gaps.len()
        );
        if !allow_gaps {
            return Err(format!(
                "{message}; the klines would be incomplete (use --allow-gaps to print them anyway)"
            ));
        }
        eprintln!("klagg replay: warning: {message}");
    }
    Ok(())
}

fn render(output: &ReplayOutput, interval: Interval, header: bool) -> String {
    let klines = output
        .klines
        .get(&interval)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut text = String::with_capacity(klines.len() * 128 + 128);
    if header {
        text.push_str(KLINE_CSV_HEADER);
        text.push('\n');
    }
    for kline in klines {
        kline.write_csv(&mut text, output.scales);
        text.push('\n');
    }
    text
}

/// Write every interval's file under a temporary name first, then rename them all, so a failure
/// leaves no file that looks complete.
fn write_files(
    dir: &Path,
    symbol: &str,
    output: &ReplayOutput,
    header: bool,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let mut written = Vec::new();
    for &interval in output.klines.keys() {
        let target = dir.join(format!("{symbol}-{interval}.csv"));
        let partial = target.with_extension("csv.partial");
        std::fs::write(&partial, render(output, interval, header))
            .map_err(|err| format!("{}: {err}", partial.display()))?;
        written.push((partial, target));
    }
    let mut names = String::new();
    for (partial, target) in &written {
        std::fs::rename(partial, target).map_err(|err| format!("{}: {err}", target.display()))?;
        let _ = write!(names, " {}", target.display());
    }
    eprintln!("klagg replay: wrote{names}");
    Ok(())
}
