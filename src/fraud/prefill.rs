//! The prefill attack (docs/reference.md §6.1): a cheap model generates the tokens, the
//! claimed model computes the logprob "proof" for them in one teacher-forced
//! pass, and the artifact names the claimed model.

use super::FraudError;
use crate::engine::generate::generate;
use crate::engine::runtime::Runtime;
use crate::verify;
use crate::verify::artifact::{Alt, Artifact, Position, Request};

/// Generate with `cheap`, then launder the tokens through `claimed`: the
/// artifact's logprobs and top-k are exactly what `claimed` computes for
/// these tokens, so every logprob distance passes.
pub fn prefill_attack(
    cheap: &mut Runtime,
    claimed: &mut Runtime,
    request: &Request,
) -> Result<Artifact, FraudError> {
    let prompt = verify::prompt_ids(cheap, request)?;
    if verify::prompt_ids(claimed, request)? != prompt {
        return Err(FraudError::Vocabulary(
            "the prompt tokenizes differently".into(),
        ));
    }
    let gen = generate(
        cheap,
        &prompt,
        &request.to_generate(request.top_logprobs, false),
        |_, _| {},
    )?;
    let ids = gen.output_ids();
    let k = request.top_logprobs.max(1);
    let replay = verify::teacher_forced(claimed, &prompt, &ids, k, None, 0.0, false)?;
    let mut artifact = Artifact::from_generation(claimed, request.clone(), &gen, false)?;
    let name = |key: &str| -> Result<(u32, String), FraudError> {
        let id: u32 = key
            .trim_start_matches('#')
            .parse()
            .map_err(|_| FraudError::Vocabulary(key.into()))?;
        let token = claimed
            .tokenizer
            .token_string(id)
            .map_err(|e| FraudError::Vocabulary(e.to_string()))?;
        Ok((id, token))
    };
    artifact.positions = replay
        .views
        .iter()
        .map(|v| {
            let (id, token) = name(&v.chosen)?;
            let top_logprobs = v
                .top
                .iter()
                .map(|(key, lp)| {
                    let (id, token) = name(key)?;
                    Ok(Alt {
                        id: Some(id),
                        token,
                        bytes: None,
                        logprob: *lp,
                    })
                })
                .collect::<Result<Vec<_>, FraudError>>()?;
            Ok(Position {
                id: Some(id),
                token,
                bytes: None,
                logprob: v.logprob,
                top_logprobs,
            })
        })
        .collect::<Result<Vec<_>, FraudError>>()?;
    Ok(artifact)
}
