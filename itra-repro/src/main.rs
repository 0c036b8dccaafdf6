//! `itra`: train, reproduce and inspect the ITRA experiments.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use itra_core::{Bandwidth, CenterInit, Matching, Method, Normalize, SecondBatchMode};
use itra_models::Arch;
use itra_repro::cluster::{self, RunRequest, SlurmOptions};
use itra_repro::config::{
    AugmentationRecipe, DataConfig, DistanceProbe, LossConfig, ModelConfig, OptimizerConfig, Schedule, TextFeatures,
    WeightDecayMode,
};
use itra_repro::experiments::{Profile, RunMode, Runner, Target, plan, reproduce};
use itra_repro::train::{RunOptions, train};
use itra_repro::{DatasetId, DeviceSpec, ExperimentConfig, config};

#[derive(Parser)]
#[command(name = "itra", version, about = "In-Training Representation Alignment: train and reproduce the paper")]
struct Cli {
    /// Where datasets live (default: $ITRA_DATA, else the per-user cache directory).
    #[arg(long, global = true, env = "ITRA_DATA")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one model with one method and print its test accuracy and cross-entropy per epoch.
    Train(TrainArgs),
    /// Run the experiments behind a table or figure of the paper and write it next to the
    /// paper's numbers (finished runs are reused, interrupted ones resumed).
    Reproduce(ReproduceArgs),
    /// Run one run of a plan (`itra reproduce <target> --plan`) or one configuration file into
    /// the shared runs directory: reused if it finished, resumed if it was interrupted, refused
    /// while another process trains it. A Slurm array task runs this.
    Run(RunArgs),
    /// List every registered architecture with its parameter and multiply-accumulate counts.
    Models(ModelsArgs),
    /// Fetch, inspect and verify datasets and pretrained encoders.
    Data {
        #[command(subcommand)]
        command: itra_repro::data_cli::DataCommand,
    },
    /// Print the pooled last hidden state of a text encoder for each text.
    Encode(itra_repro::encode::EncodeArgs),
    /// Measure training throughput and memory (see docs/benchmarks.md).
    Bench(itra_repro::bench::BenchArgs),
}

#[derive(Args)]
struct ModelsArgs {
    /// Number of classes of the head.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Input shape CxHxW (default: each architecture's reference shape).
    #[arg(long)]
    input: Option<String>,
    /// Print JSON (one array) instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_shape(text: &str) -> Result<[usize; 3]> {
    let dims: Vec<usize> = text
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("input shape `{text}` is not CxHxW, e.g. 3x224x224"))?;
    dims.try_into().map_err(|_| anyhow::anyhow!("input shape `{text}` needs three dimensions, e.g. 3x224x224"))
}

#[derive(Args)]
struct ReproduceArgs {
    /// table1, table2, table3, table4, figure1, figure2 or figure3.
    target: Target,
    /// paper, cpu or smoke.
    #[arg(long, default_value = "cpu")]
    profile: Profile,
    /// Seeds per configuration (default: 3 for paper and cpu, 2 for smoke).
    #[arg(long)]
    seeds: Option<usize>,
    /// cpu, cuda:N, wgpu[:N], tch-cpu or tch-cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Root of the run directories (one per configuration and seed).
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Where tables and figures go (`<results>/<profile>/`).
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// Show progress bars.
    #[arg(long)]
    progress: bool,
    /// Train nothing: write every run of the grid as a JSON line, for `itra run --config`.
    #[arg(long, conflicts_with_all = ["collect", "slurm"])]
    plan: bool,
    /// Where `--plan` writes (default: `<runs-dir>/<profile>/plans/<target>.jsonl`).
    #[arg(long, value_name = "FILE", requires = "plan")]
    plan_file: Option<PathBuf>,
    /// Train nothing: render from the finished runs, list the others, and mark the table or
    /// figure incomplete.
    #[arg(long, conflicts_with = "slurm")]
    collect: bool,
    /// Submit the unfinished runs as a Slurm job array (one task per run) and print how to
    /// collect; the batch script stays on disk under `<runs-dir>/<profile>/slurm/`.
    #[arg(long)]
    slurm: bool,
    #[command(flatten)]
    slurm_options: SlurmArgs,
}

/// `sbatch` options of `--slurm`.
#[derive(Args)]
struct SlurmArgs {
    /// Slurm partition.
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// Generic resources per task, e.g. gpu:1.
    #[arg(long, requires = "slurm")]
    gres: Option<String>,
    /// Time limit per task, e.g. 12:00:00.
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    /// CPUs per task.
    #[arg(long, requires = "slurm")]
    cpus_per_task: Option<usize>,
    /// Memory per node, e.g. 32G.
    #[arg(long, requires = "slurm")]
    mem: Option<String>,
    /// Account to charge.
    #[arg(long, requires = "slurm")]
    account: Option<String>,
    /// Quality of service.
    #[arg(long, requires = "slurm")]
    qos: Option<String>,
    /// Run at most this many array tasks at once.
    #[arg(long, requires = "slurm")]
    max_parallel: Option<usize>,
    /// Any other sbatch option, as one `#SBATCH` line each (repeatable), e.g.
    /// --sbatch-arg=--constraint=a100.
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true, requires = "slurm")]
    sbatch_args: Vec<String>,
    /// The itra binary the tasks run (default: this one; it must be on a file system the nodes see).
    #[arg(long, requires = "slurm")]
    itra_bin: Option<PathBuf>,
    /// Write the batch script and its task list, but do not submit.
    #[arg(long, requires = "slurm")]
    no_submit: bool,
}

#[derive(Args)]
struct RunArgs {
    /// A plan (`--plan`'s JSON lines, or a Slurm submission's `tasks.jsonl`), a single plan line,
    /// an ExperimentConfig as JSON, or a run's `config.json`.
    #[arg(long)]
    config: PathBuf,
    /// Which run of a plan, from 0 (Slurm: `$SLURM_ARRAY_TASK_ID`).
    #[arg(long)]
    index: Option<usize>,
    /// Root of the run directories (a plan's runs go under `<runs-dir>/<profile>/`, as with
    /// `itra reproduce`).
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Root of the results (a plan's finished runs are copied to `<results>/<profile>/runs/`).
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// Train on this device instead of the one planned (cpu, cuda:N, wgpu[:N], tch-cpu or tch-cuda:N).
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// Show the progress bar.
    #[arg(long)]
    progress: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerName {
    Sgd,
    Adam,
}

#[derive(Args)]
struct TrainArgs {
    /// Dataset id (fmnist, kmnist, cifar10, ..., folder:<path>).
    #[arg(long, default_value = "fmnist")]
    dataset: DatasetId,
    /// Architecture (see `itra models`) or text encoder (minilm, bert-base, distilbert, xlnet,
    /// or a checkpoint directory).
    #[arg(long, default_value = "small-cnn")]
    model: String,
    /// Text encoders: truncate sequences to this many tokens.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Text encoders: what the head's final linear layer reads and ITRA / Center act on:
    /// pooler (the head's pooled output), cls (the CLS token's last hidden state) or mean (the
    /// masked mean of the last hidden states).
    #[arg(long, default_value = "pooler")]
    text_features: TextFeatures,
    /// baseline, lsr, center, itra or itra-c.
    #[arg(long, default_value = "baseline")]
    method: Method,
    /// Weight of the regulariser (LSR: the smoothing).
    #[arg(long, default_value_t = 0.0)]
    lambda: f64,
    /// Where S2's features come from: full, detached or cached.
    #[arg(long, default_value = "full")]
    second_batch: SecondBatchMode,
    /// Fixed kernel bandwidth sigma (default: the pooled median heuristic).
    #[arg(long)]
    bandwidth: Option<f64>,
    /// ITRA-c: divide by all classes instead of the classes present in both batches.
    #[arg(long)]
    all_classes: bool,
    /// ITRA's matching term: mmd (sqrt(max(MMD^2, eps)), the paper's) or mmd2 (MMD^2 itself).
    #[arg(long = "match", default_value = "mmd")]
    matching: Matching,
    /// Ramp lambda linearly from 0 over this fraction of all steps (0: no warm-up).
    #[arg(long, default_value_t = 0.0)]
    lambda_warmup: f64,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerName,
    /// Learning rate (default: 1e-3 for Adam, 0.1 for SGD).
    #[arg(long)]
    lr: Option<f64>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Cosine learning-rate annealing to 0 (default: constant).
    #[arg(long)]
    cosine: bool,
    /// Warm the learning rate up linearly over this fraction of all steps (default: the
    /// model's recipe, 0 for vision and 0.06 for text encoders).
    #[arg(long)]
    lr_warmup: Option<f64>,
    /// Adam's weight decay: coupled (added to the gradient, torch.optim.Adam) or decoupled
    /// (AdamW) (default: coupled for vision, decoupled for text encoders).
    #[arg(long)]
    weight_decay_mode: Option<WeightDecayMode>,
    /// Figure 1's distance probe: inference (S1 and S2 through the inference model), training
    /// (the training forward's features; methods with S2 only) or off (default: inference for
    /// vision, training for text encoders).
    #[arg(long)]
    distance_probe: Option<DistanceProbe>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda:N, wgpu[:N], tch-cpu or tch-cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Train on a seeded draw of this many training examples.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on a seeded draw of this many test examples, stratified by class.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Hold out this many training examples as a validation split (a seeded draw, stratified by
    /// class).
    #[arg(long, default_value_t = 0)]
    validation: usize,
    /// Training augmentation: none, crop-flip (pad 1/8 of the side, random crop, flip: CIFAR's
    /// pad 4 / 32, STL-10's pad 12 / 96) or imagenet (random-resized crop 224 and flip;
    /// evaluation resizes to 256 and centre-crops 224).
    #[arg(long, default_value = "none")]
    augmentation: AugmentationRecipe,
    /// Center loss: initial centres, class-mean (each class's feature mean when it first
    /// appears; the default) or zero (the old rule, for ablations).
    #[arg(long, default_value = "class-mean")]
    center_init: CenterInit,
    /// Center loss without Wen et al.'s factor 1/2 (the old rule, for ablations).
    #[arg(long)]
    center_no_half: bool,
    /// Root of the run directories.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

impl TrainArgs {
    fn experiment(&self) -> Result<ExperimentConfig> {
        let optimizer = match self.optimizer {
            OptimizerName::Sgd => OptimizerConfig::Sgd {
                lr: self.lr.unwrap_or(0.1),
                momentum: self.momentum,
                weight_decay: self.weight_decay,
            },
            OptimizerName::Adam => {
                OptimizerConfig::Adam { lr: self.lr.unwrap_or(1e-3), weight_decay: self.weight_decay }
            }
        };
        Ok(ExperimentConfig {
            data: DataConfig {
                dataset: self.dataset.to_string(),
                train_limit: self.train_limit,
                test_limit: self.test_limit,
                validation: self.validation,
                augmentation: self.augmentation,
            },
            model: ModelConfig::parse(&self.model, &self.dataset, self.max_len, self.text_features)
                .map_err(anyhow::Error::msg)?,
            loss: LossConfig {
                method: self.method,
                lambda: self.lambda,
                second_batch: self.second_batch,
                bandwidth: self.bandwidth.map_or(Bandwidth::Median, Bandwidth::Fixed),
                normalize: if self.all_classes { Normalize::AllClasses } else { Normalize::Present },
                center_init: self.center_init,
                center_halve: !self.center_no_half,
                matching: self.matching,
                lambda_warmup: self.lambda_warmup,
                ..LossConfig::baseline()
            },
            optimizer,
            schedule: if self.cosine { Schedule::Cosine } else { Schedule::Constant },
            step: None,
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            device: self.device,
        }
        .with_step_policy_overrides(self.lr_warmup, self.weight_decay_mode, self.distance_probe))
    }
}

/// glibc's malloc returns large freed blocks (most tensor buffers) to the kernel, so every
/// training step page-faults its buffers back in; mimalloc keeps them. The measured effect is
/// in `docs/benchmarks.md`. Build without the `mimalloc` feature to use the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option index of `purge_delay` (`mi_option_purge_delay` in mimalloc 3's
/// `mimalloc.h`; `libmimalloc-sys` names no constant for it).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to return freed memory to the OS. By default it purges freed pages after
/// a second, and a ResNet step frees and reallocates tens of 30 MiB activations, each of which then
/// page-faults back in (the kernel zeroing them took 12 % of a CIFAR ResNet-18 step). Measured:
/// +10 % img/s on that step for +127 MiB peak RSS (`docs/benchmarks.md`). The option is only set
/// when index 15 reads mimalloc 3's default (1000 ms, `src/options.c`), so a renumbered option is
/// left alone.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: `mi_option_get` and `mi_option_set` read and write one entry of mimalloc's option
    // table; they take plain integers, touch no caller memory and are safe to call at any time.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
            && libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000
        {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

fn main() -> Result<()> {
    #[cfg(feature = "mimalloc")]
    keep_freed_memory();
    let cli = Cli::parse();
    let data_dir = cli.data_dir.clone().unwrap_or_else(itra_data::default_data_dir);
    match cli.command {
        Command::Train(args) => {
            let experiment = args.experiment()?;
            let run_dir = config::run_dir(&args.runs_dir, &experiment);
            println!("run {} -> {}", experiment.slug(), run_dir.display());
            let summary =
                train(&experiment, &RunOptions { data_dir, run_dir, progress: !args.quiet, reuse_finished: false })?;
            if let Some(last) = summary.epochs.last() {
                let unit = if matches!(experiment.model, ModelConfig::Text { .. }) { "seq/s" } else { "img/s" };
                println!(
                    "final: test accuracy {:.2}%  test CE {:.4}  {:.1} {unit}  peak RSS {}",
                    last.test_accuracy,
                    last.test_ce,
                    last.images_per_second,
                    summary.peak_rss_mib.map_or("n/a".to_owned(), |m| format!("{m:.0} MiB"))
                );
            }
            if let Some(timing) = summary.timing.last() {
                println!("last epoch's time: {}", timing.shares());
            }
        }
        Command::Data { command } => itra_repro::data_cli::run(&command, &data_dir)?,
        Command::Encode(args) => itra_repro::encode::run(&args, &data_dir)?,
        Command::Bench(args) if args.epoch || args.one_epoch.is_some() => {
            itra_repro::bench_epoch::run(&args, &data_dir)?
        }
        Command::Bench(args) => itra_repro::bench::run(&args)?,
        Command::Models(args) => {
            let shape = args.input.as_deref().map(parse_shape).transpose()?;
            let mut infos = Vec::new();
            for &arch in Arch::ALL {
                match itra_models::describe(arch, args.classes, shape.unwrap_or_else(|| arch.reference_input_shape())) {
                    Ok(info) => infos.push(info),
                    // An architecture that cannot take the asked-for input is named, not fatal.
                    Err(err) => eprintln!("skipped {}: {err}", arch.name()),
                }
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&infos)?);
            } else {
                println!("{:<20} {:>14} {:>16} {:>9}", "architecture", "parameters", "MACs per image", "feat_dim");
                for info in infos {
                    println!("{:<20} {:>14} {:>16} {:>9}", info.name, info.params, info.macs, info.feat_dim);
                }
            }
        }
        Command::Reproduce(args) => reproduce_command(args, data_dir)?,
        Command::Run(args) => run_command(&args, data_dir)?,
    }
    Ok(())
}

fn reproduce_command(args: ReproduceArgs, data_dir: PathBuf) -> Result<()> {
    let seeds = args.seeds.unwrap_or_else(|| args.profile.default_seeds());
    let mut runner =
        Runner::new(data_dir, args.runs_dir.join(args.profile.name()), args.results_dir.clone(), seeds, args.device);
    runner.progress = args.progress;
    let (target, profile) = (args.target, args.profile);
    let again = |flag: &str| {
        let mut line = format!("itra reproduce {} --profile {profile}", target.name());
        if args.runs_dir != std::path::Path::new("runs") {
            line.push_str(&format!(" --runs-dir {}", args.runs_dir.display()));
        }
        if args.results_dir != std::path::Path::new("results") {
            line.push_str(&format!(" --results-dir {}", args.results_dir.display()));
        }
        if args.seeds.is_some() {
            line.push_str(&format!(" --seeds {seeds}"));
        }
        format!("{line} {flag}")
    };
    if args.plan {
        let path =
            args.plan_file.clone().unwrap_or_else(|| cluster::default_plan_path(&args.runs_dir, target, profile));
        let runs = plan(&runner, target, profile)?;
        let lines: Vec<_> = runs.iter().map(|run| cluster::PlanLine::new(target, profile, run)).collect();
        cluster::write_plan(&path, &lines)?;
        let finished = runs.iter().filter(|run| run.finished).count();
        println!(
            "\nplanned {} runs of {} ({profile} profile), {finished} already finished: {}",
            lines.len(),
            target.name(),
            path.display()
        );
        println!("run one with: itra run --config {} --index N", path.display());
        println!("then render:  {}", again("--collect"));
        return Ok(());
    }
    if args.slurm {
        let o = args.slurm_options;
        let options = SlurmOptions {
            partition: o.partition,
            gres: o.gres,
            time: o.time,
            cpus_per_task: o.cpus_per_task,
            mem: o.mem,
            account: o.account,
            qos: o.qos,
            max_parallel: o.max_parallel,
            extra: o.sbatch_args,
            itra_bin: o.itra_bin,
            no_submit: o.no_submit,
        };
        let Some(submission) = cluster::submit(&runner, target, profile, &args.runs_dir, &options)? else {
            println!("\nevery run of {} has finished; nothing to submit. Rendering it:", target.name());
            runner.mode = RunMode::FinishedOnly;
            let output = reproduce(&runner, target, profile)?;
            println!("wrote {}", output.display());
            return Ok(());
        };
        println!();
        for (slug, holder) in &submission.running {
            println!("not submitted, {slug} is being trained now by {holder}");
        }
        let tasks = match submission.tasks.len() {
            1 => "1 array task".to_owned(),
            n => format!("{n} array tasks"),
        };
        match &submission.job_id {
            Some(job) => println!(
                "submitted job {job}: {tasks}, one per unfinished run ({})\nlogs: {}/logs/\nwatch: squeue -j {job}",
                submission.script.display(),
                submission.dir.display()
            ),
            None if submission.tasks.is_empty() => println!("nothing submitted: every unfinished run is being trained"),
            None => println!(
                "wrote {} ({tasks}), not submitted; submit it with: sbatch {}",
                submission.script.display(),
                submission.script.display()
            ),
        }
        println!("when it is done: {}", again("--collect"));
        println!("after a failure or a preemption, `--slurm` again submits only the runs still unfinished");
        return Ok(());
    }
    if args.collect {
        runner.mode = RunMode::FinishedOnly;
    }
    let output = reproduce(&runner, target, profile)?;
    println!("wrote {}", output.display());
    Ok(())
}

fn run_command(args: &RunArgs, data_dir: PathBuf) -> Result<()> {
    let request = cluster::read_request(&args.config, args.index)?;
    let summary = match request {
        RunRequest::Planned(line) => {
            let mut runner = cluster::runner_for(&line, data_dir, &args.runs_dir, &args.results_dir, args.progress);
            if let Some(device) = args.device {
                runner.device = device;
            }
            println!(
                "run {} ({} {} profile) -> {}",
                line.slug,
                line.target,
                line.profile,
                runner.run_dir(&line.config).display()
            );
            cluster::run_planned(&line, &runner)?
        }
        RunRequest::Config(config) => {
            let mut runner = Runner::new(data_dir, args.runs_dir.clone(), args.results_dir.clone(), 1, config.device);
            runner.progress = args.progress;
            if let Some(device) = args.device {
                runner.device = device;
            }
            println!("run {} -> {}", config.slug(), runner.run_dir(&config).display());
            runner.run(&config)?.context("the runner trains in this mode")?
        }
    };
    if let Some(last) = summary.epochs.last() {
        println!(
            "done: {} epochs, test accuracy {:.2}%  test CE {:.4}{}",
            summary.epochs.len(),
            last.test_accuracy,
            last.test_ce,
            if summary.resumed_from_epoch > 0 {
                format!("  (resumed from epoch {})", summary.resumed_from_epoch)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
