import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// What a route answers.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int = 200, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// Plain text, UTF-8.
    public static func text(_ text: String, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }
}

/// A route's handler. It runs on the listener's worker thread (never an event loop, never a shipper's thread), one
/// request at a time, so it may take a few milliseconds (reading files) without holding up other connections.
public typealias HTTPRoute = @Sendable () -> HTTPResponse

/// The operator's HTTP/1.1 listener beside the shippers (`walctl ship --http`, `walctl serve`): `GET` and `HEAD` of
/// a fixed set of paths, nothing else. One event-loop thread for the sockets and one worker thread for the routes,
/// both its own: a slow scrape never touches the emit path or a shipper's thread, and a shipper never waits for it.
///
/// Hostile clients get little: request heads are bounded by NIO's HTTP parser (garbage gets a 400 and the
/// connection closed), bodies are discarded, a connection that sends nothing for `idleTimeoutSeconds` between
/// requests is closed, a request must be whole within `requestTimeoutSeconds` of its first byte (a client sending a
/// byte at a time cannot keep a connection: the idle timer alone is reset by every byte), no timer runs while a
/// route works on an answer, and at most `maxConnections` are open at once (the rest are closed at accept).
public final class ObserveServer: Service, Sendable {
    public let host: String
    public let requestedPort: Int
    private let routes: [String: HTTPRoute]
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let pool: NIOThreadPool
    private let state = Mutex<(channel: (any Channel)?, closed: Bool)>((nil, false))
    private let connections = Atomic<Int>(0)
    let maxConnections: Int
    let idleTimeoutSeconds: Int64
    let requestTimeoutSeconds: Int64

    public init(
        host: String,
        port: Int,
        routes: [String: HTTPRoute],
        logger: Logger,
        maxConnections: Int = 128,
        idleTimeoutSeconds: Int64 = 30,
        requestTimeoutSeconds: Int64 = 10
    ) {
        self.requestTimeoutSeconds = requestTimeoutSeconds
        self.host = host
        self.requestedPort = port
        self.routes = routes
        self.logger = logger
        self.maxConnections = maxConnections
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.pool = NIOThreadPool(numberOfThreads: 1)
    }

    /// Binds and starts serving; returns the bound port (useful with port 0). Throws when the address cannot be
    /// bound (in use, not local, not permitted).
    @discardableResult
    public func start() throws -> Int {
        let (bound, closed) = state.withLock { ($0.channel?.localAddress?.port, $0.closed) }
        if let bound { return bound }
        guard !closed else { throw ObserveServerError("the listener was shut down") }
        pool.start()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                guard connections.wrappingAdd(1, ordering: .relaxed).newValue <= maxConnections else {
                    connections.wrappingSubtract(1, ordering: .relaxed)
                    return channel.close()
                }
                channel.closeFuture.whenComplete { [self] _ in
                    connections.wrappingSubtract(1, ordering: .relaxed)
                }
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(BytesArrivedHandler())
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                    try pipeline.addHandler(
                        RouteHandler(
                            routes: routes,
                            pool: pool,
                            idleTimeout: .seconds(idleTimeoutSeconds),
                            requestTimeout: .seconds(requestTimeoutSeconds)
                        )
                    )
                }
            }
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A client that sends its request and shuts down its side (as `nc` does) still gets the answer.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
        let channel: any Channel
        do {
            channel = try bootstrap.bind(host: host, port: requestedPort).wait()
        } catch {
            throw ObserveServerError("cannot listen on \(host):\(requestedPort): \(error)")
        }
        state.withLock { $0.channel = channel }
        let port = channel.localAddress?.port ?? requestedPort
        logger.info("listening", metadata: ["address": "http://\(Self.displayHost(host)):\(port)/"])
        return port
    }

    /// Connections open now.
    var openConnections: Int { connections.load(ordering: .relaxed) }

    /// The bound port once started.
    public var port: Int? { state.withLock { $0.channel?.localAddress?.port } }

    /// Serves until graceful shutdown, cancellation or `shutdown()`, then closes.
    public func run() async throws {
        guard !state.withLock({ $0.closed }) else { return }
        try start()
        guard let channel = state.withLock({ $0.channel }) else { return }
        // The handlers only ask the listener to close: they run with the task's status locked, and waiting there
        // for the event loop (which must resume this very task) deadlocked `walctl ship --http` after a fatal
        // sink error (it never exited). The blocking shutdown runs after the await, outside them.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
        shutdown()
    }

    /// Stops listening, closes every connection, and stops the threads. Idempotent.
    public func shutdown() {
        let (channel, first) = state.withLock { state in
            let first = !state.closed
            state.closed = true
            return (state.channel, first)
        }
        guard first else { return }
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
        try? pool.syncShutdownGracefully()
    }

    static func displayHost(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }
}

public struct ObserveServerError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Bytes arrived on the connection (before the HTTP parser): tells the route handler that a request has begun.
private final class BytesArrivedHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    struct Event {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireUserInboundEventTriggered(Event())
        context.fireChannelRead(data)
    }
}

/// One connection's requests, answered in order (HTTP/1.1 without pipelining surprises: NIO's server pipeline
/// holds back a pipelined request until the previous response is written).
private final class RouteHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Where the connection stands, and so which deadline runs.
    private enum Phase {
        /// Waiting for a request: closed after `idleTimeout` of silence.
        case idle
        /// A request has begun: closed unless it is whole within `requestTimeout`.
        case receiving
        /// A route works on the answer: no deadline.
        case answering
    }

    private let routes: [String: HTTPRoute]
    private let pool: NIOThreadPool
    private let idleTimeout: TimeAmount
    private let requestTimeout: TimeAmount
    private var request: HTTPRequestHead?
    private var phase = Phase.idle
    private var deadline: Scheduled<Void>?
    private var inputClosed = false

    init(routes: [String: HTTPRoute], pool: NIOThreadPool, idleTimeout: TimeAmount, requestTimeout: TimeAmount) {
        self.routes = routes
        self.pool = pool
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        enter(.idle, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    private func enter(_ next: Phase, context: ChannelHandlerContext) {
        phase = next
        deadline?.cancel()
        deadline = nil
        let timeout: TimeAmount
        switch next {
        case .idle: timeout = idleTimeout
        case .receiving: timeout = requestTimeout
        case .answering: return
        }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
            if phase == .idle { enter(.receiving, context: context) }
        case .body: break  // Nothing here takes a body; it is discarded as it arrives.
        case .end:
            guard let head = request else { return }
            request = nil
            enter(.answering, context: context)
            respond(to: head, context: context)
        }
    }

    /// A request NIO's parser refused has had its 400 (from the pipeline's error handler); the connection is closed.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is BytesArrivedHandler.Event {
            if phase == .idle { enter(.receiving, context: context) }
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The client shut its side: the answer in the works goes out, then the connection closes.
            if phase == .answering { inputClosed = true } else { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = String(head.uri.prefix { $0 != "?" && $0 != "#" })
        guard head.method == .GET || head.method == .HEAD else {
            write(
                .text("only GET and HEAD\n", status: 405),
                head: head,
                context: context,
                extra: [("Allow", "GET, HEAD")]
            )
            return
        }
        guard let route = routes[path] else {
            write(
                .text("not found: try \(routes.keys.sorted().joined(separator: " "))\n", status: 404),
                head: head,
                context: context
            )
            return
        }
        pool.runIfActive(eventLoop: context.eventLoop) { route() }
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let response): self.write(response, head: head, context: context)
                case .failure: self.write(.text("shutting down\n", status: 503), head: head, context: context)
                }
            }
    }

    private func write(
        _ response: HTTPResponse,
        head request: HTTPRequestHead,
        context: ChannelHandlerContext,
        extra: [(String, String)] = []
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: "\(response.body.count)")
        headers.add(name: "Cache-Control", value: "no-store")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        for (name, value) in extra { headers.add(name: name, value: value) }
        let keepAlive = request.isKeepAlive && !inputClosed
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: request.version,
            status: HTTPResponseStatus(statusCode: response.status),
            headers: headers
        )
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD && !response.body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: response.body.count)
            buffer.writeBytes(response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            enter(.idle, context: context)
        }
    }
}

/// Where to listen: `HOST:PORT`, `[IPv6]:PORT`, or `:PORT` and `PORT` for the loopback address.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        var host = "127.0.0.1"
        var portText = Substring(text)
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = text[text.index(close, offsetBy: 2)...]
        } else if let colon = text.lastIndex(of: ":") {
            guard !text[..<colon].contains(":") else { return nil }  // IPv6 without brackets
            if colon != text.startIndex { host = String(text[..<colon]) }
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.host = host
        self.port = port
    }

    /// True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost).
    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" { return true }
        // 127.x.y.z in numbers only: a host name such as 127.0.0.1.example.com is not loopback.
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    public var description: String { "\(ObserveServer.displayHost(host)):\(port)" }
}
