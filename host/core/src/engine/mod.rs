//! Running generations: one engine thread per model ([`thread`]) admits sequences
//! ([`admission`]), runs them in batched steps ([`sequence`]: a sequence's state and its
//! invariants), samples ([`sampler`]), masks tokens a grammar forbids ([`constraint`], bounded
//! by [`grammar_budget`]), holds back text that may become a stop string ([`stop`]), and
//! gives memory back after a burst ([`memory`]). What a request asks and receives is
//! [`request`].

pub(crate) mod admission;
pub(crate) mod constraint;
pub(crate) mod grammar_budget;
pub(crate) mod memory;
pub(crate) mod request;
pub(crate) mod sampler;
pub(crate) mod sequence;
pub(crate) mod stop;
pub(crate) mod thread;
