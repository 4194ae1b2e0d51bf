//! AWS Lambda: the control plane of functions, versions, aliases, layers and concurrency.
