import ArgumentParser
import Foundation
import NIOCore

/// How many event loop threads a serving process runs (`hearth gateway`, `node` and `up`).
///
/// The number has to be known before anything uses SwiftNIO's shared group, so the executable reads it from the parsed
/// command (`EventLoopSized`) before running it; a command run in process (tests) leaves the group as it is.
struct EventLoopOptions: ParsableArguments {
    @Option(
        help: """
            Event loop threads for network I/O (default: half the cores, at least one; 1 for `hearth up`). One loop \
            keeps a request's link and its client's connection on one thread, with no hand-off between threads; more \
            loops serve more connections at once on a machine with the cores for them.
            """
    )
    var eventLoops: Int?

    /// Half the cores, at least one: the rest run what a request does off its loop (the receipt's check and the
    /// metering in the runtime's pool, the database's writer) and, on a node, the engine. On two cores one loop
    /// answered sequential requests 0.2 ms sooner than two, spent 10 % less CPU per answer and served 5 % more at the
    /// ceiling (`bench/README.md`). `nil` where `NIO_SINGLETON_GROUP_LOOP_COUNT` says how many.
    static var defaultCount: Int? {
        ProcessInfo.processInfo.environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] == nil ? max(1, System.coreCount / 2) : nil
    }

    func validate() throws {
        if let eventLoops, !(1...256).contains(eventLoops) { throw ValidationError("--event-loops must be between 1 and 256") }
    }
}

/// A command whose process sizes SwiftNIO's shared event loop group before it runs.
public protocol EventLoopSized {
    /// The loops to run; `nil` leaves SwiftNIO's default (one per core, or `NIO_SINGLETON_GROUP_LOOP_COUNT`).
    var eventLoopCount: Int? { get }
}

extension GatewayRunCommand: EventLoopSized {
    public var eventLoopCount: Int? { loops.eventLoops ?? EventLoopOptions.defaultCount }
}

extension NodeCommand: EventLoopSized {
    public var eventLoopCount: Int? { loops.eventLoops ?? EventLoopOptions.defaultCount }
}

extension UpCommand: EventLoopSized {
    /// One by default: `hearth up` shares the machine with its engine, which the cores are for.
    public var eventLoopCount: Int? { loops.eventLoops ?? 1 }
}
