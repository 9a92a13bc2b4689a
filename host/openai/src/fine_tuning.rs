//! `/v1/fine_tuning/jobs` response bodies as openai-python reads them: the job
//! (`fine_tuning.job`), its events and its checkpoints.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a fine-tuning job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    ValidatingFiles,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Not OpenAI's: a job a client paused (`POST .../pause`); `resume` takes it on.
    Paused,
}

impl JobStatus {
    /// Over: nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// Why a job failed: OpenAI's codes (`invalid_training_file`, ...) and the parameter at
/// fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
}

/// Hyper-parameters as a job shows them: each `"auto"` until the job settles it, then a
/// number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub batch_size: Value,
    pub learning_rate_multiplier: Value,
    pub n_epochs: Value,
}

/// `method` as a job shows it (supervised only here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Method {
    #[serde(rename = "type")]
    pub kind: String,
    pub supervised: Option<Supervised>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Supervised {
    pub hyperparameters: Hyperparameters,
}

/// A fine-tuning job (`object: "fine_tuning.job"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuningJob {
    pub id: String,
    pub object: String,
    pub created_at: u64,
    pub error: Option<JobError>,
    pub fine_tuned_model: Option<String>,
    pub finished_at: Option<u64>,
    pub hyperparameters: Hyperparameters,
    pub model: String,
    pub organization_id: String,
    pub result_files: Vec<String>,
    pub seed: u64,
    pub status: JobStatus,
    pub trained_tokens: Option<u64>,
    pub training_file: String,
    pub validation_file: Option<String>,
    pub estimated_finish: Option<u64>,
    pub integrations: Option<Vec<Value>>,
    pub metadata: Option<Value>,
    pub method: Method,
}

/// One line of a job's log (`object: "fine_tuning.job.event"`): a message, or a step's
/// metrics (`type: "metrics"`, `data` with `step`, `train_loss`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub id: String,
    pub object: String,
    pub created_at: u64,
    /// `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    pub data: Option<Value>,
    #[serde(rename = "type")]
    pub kind: String,
}

/// What a checkpoint measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetrics {
    pub step: Option<f64>,
    pub train_loss: Option<f64>,
    pub train_mean_token_accuracy: Option<f64>,
    pub valid_loss: Option<f64>,
    pub valid_mean_token_accuracy: Option<f64>,
    pub full_valid_loss: Option<f64>,
    pub full_valid_mean_token_accuracy: Option<f64>,
}

/// A model saved at the end of an epoch (`object: "fine_tuning.job.checkpoint"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobCheckpoint {
    pub id: String,
    pub object: String,
    pub created_at: u64,
    pub fine_tuned_model_checkpoint: String,
    pub fine_tuning_job_id: String,
    pub metrics: CheckpointMetrics,
    pub step_number: u64,
}
