package import NIOCore
import NIOPosix

/// Runs a task's jobs on one event loop: a task that relays a link stream's events runs where they arrive, so that
/// each event resumes it on the same thread, without waking one of the cooperative pool's (each such wake-up was a
/// futex and a thread switch per event). Only for work that never blocks: the loop also serves every other stream of
/// the link.
package final class EventLoopExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    package init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// The executor of the event loop this code runs on, or `nil` off the loops (a task then runs in the pool).
    package static var current: EventLoopExecutor? {
        MultiThreadedEventLoopGroup.currentEventLoop.map(EventLoopExecutor.init)
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
