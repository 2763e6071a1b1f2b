//! atom-fabric: the neural fabric scheduler.
