import Testing

/// The suites that load the whole machine take turns: the chaos run (four nodes, sixteen clients), a real browser,
/// Open WebUI (its start imports torch). Beside each other on two cores and beside CI's stress-ng, the chaos run's
/// retries piled up on its frozen node until the retry budget refused one (seen once, with Open WebUI starting beside
/// it). Each is still measured on a busy machine; they only stop making it busier for each other.
@Suite(.serialized) enum OneAtATime {}
