//! Constructors for the WIT's records with OpenAI's defaults, so a plugin writes only what it
//! changes.

use crate::inference::{GenerateRequest, LogitBias, Sampling};
use crate::openai::params;

impl Default for Sampling {
    /// OpenAI's defaults: temperature 1, top-p 1, no seed, no penalties, no logit bias.
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

impl From<params::Sampling> for Sampling {
    /// Sampling parameters checked with OpenAI's rules, as the WIT's record.
    fn from(s: params::Sampling) -> Self {
        Sampling {
            temperature: s.temperature,
            top_p: s.top_p,
            seed: s.seed,
            presence_penalty: s.presence_penalty,
            frequency_penalty: s.frequency_penalty,
            logit_bias: s
                .logit_bias
                .into_iter()
                .map(|(token, bias)| LogitBias { token, bias })
                .collect(),
        }
    }
}

impl From<params::chat::Tools> for crate::tools::ToolUse {
    /// Tools checked with OpenAI's rules (chat's or the Responses API's), as the WIT's record.
    fn from(t: params::chat::Tools) -> Self {
        use crate::tools::{Function, ToolChoice};
        crate::tools::ToolUse {
            functions: t
                .functions
                .into_iter()
                .map(|f| Function {
                    name: f.name,
                    description: f.description,
                    parameters: f.parameters.to_string(),
                })
                .collect(),
            choice: match t.choice {
                params::chat::ToolChoice::Auto => ToolChoice::Auto,
                params::chat::ToolChoice::Required => ToolChoice::Required,
                params::chat::ToolChoice::Function(name) => ToolChoice::Function(name),
            },
            parallel: t.parallel,
        }
    }
}

impl Sampling {
    /// Greedy decoding (temperature 0): the same prompt gets the same answer.
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            ..Sampling::default()
        }
    }
}

impl GenerateRequest {
    /// A generation of `model` from `prompt` (token ids) with OpenAI's default sampling, no
    /// stop strings, no cap below the model's context and no logprobs.
    pub fn new(model: &str, prompt: Vec<u32>) -> Self {
        GenerateRequest {
            model: model.to_owned(),
            prompt,
            max_tokens: None,
            sampling: Sampling::default(),
            stop: Vec::new(),
            top_logprobs: None,
        }
    }
}

impl From<params::list::ListParams> for crate::store::Query {
    /// A list request's paging (`limit`, `order`, `after`) as a store query without filters.
    fn from(p: params::list::ListParams) -> Self {
        crate::store::Query {
            limit: p.limit,
            order: if p.newest_first {
                crate::store::Order::Desc
            } else {
                crate::store::Order::Asc
            },
            after: p.after,
            before: None,
            status: None,
            metadata: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_openais() {
        let r = GenerateRequest::new("m", vec![1, 2]);
        assert_eq!(r.sampling.temperature, 1.0);
        assert_eq!(r.sampling.top_p, 1.0);
        assert_eq!(Sampling::greedy().temperature, 0.0);
        assert!(r.stop.is_empty() && r.max_tokens.is_none() && r.top_logprobs.is_none());
    }
}
