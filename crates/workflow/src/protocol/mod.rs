//! The runner protocol on the VM: the step program ([`script`]), workflow commands in output
//! ([`command`]), environment files ([`file_command`]), masking ([`mask`]) and the processing of
//! streamed output ([`output`]).

pub mod command;
pub mod file_command;
pub mod mask;
pub mod output;
pub mod script;
