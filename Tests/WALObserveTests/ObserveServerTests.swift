import Foundation
import Logging
import Synchronization
import Testing
import WALTestKit

@testable import WALObserve

/// The listener as a hostile or careless client meets it: only GET and HEAD of known paths, garbage answered with
/// 400 and a closed connection, a flood of connections survived, and a port in use reported clearly.
@Suite struct ObserveServerTests {
    static func server(
        _ routes: [String: HTTPRoute] = [:],
        maxConnections: Int = 128,
        idleTimeoutSeconds: Int64 = 30,
        requestTimeoutSeconds: Int64 = 10
    ) throws -> (ObserveServer, Int) {
        var all: [String: HTTPRoute] = ["/hello": { .text("hello\n") }]
        all.merge(routes) { _, new in new }
        let server = ObserveServer(
            host: "127.0.0.1",
            port: 0,
            routes: all,
            logger: Logger(label: "test"),
            maxConnections: maxConnections,
            idleTimeoutSeconds: idleTimeoutSeconds,
            requestTimeoutSeconds: requestTimeoutSeconds
        )
        return (server, try server.start())
    }

    @Test func servesGetAndHeadOfKnownPathsOnly() throws {
        let (server, port) = try Self.server()
        defer { server.shutdown() }
        let hello = try #require(httpGet(port: port, "/hello?x=1"))
        #expect(hello.status == 200 && hello.body == "hello\n")
        #expect(hello.headers["content-type"] == "text/plain; charset=utf-8")
        #expect(hello.headers["cache-control"] == "no-store")
        let head = try #require(httpGet(port: port, "/hello", method: "HEAD"))
        #expect(head.status == 200 && head.body.isEmpty && head.headers["content-length"] == "6")
        let missing = try #require(httpGet(port: port, "/etc/passwd"))
        #expect(missing.status == 404 && missing.body.contains("/hello"))
        let post = try #require(httpGet(port: port, "/hello", method: "POST"))
        #expect(post.status == 405 && post.headers["allow"] == "GET, HEAD")
    }

    @Test func keepAliveConnectionsGetEveryAnswerInOrder() throws {
        let (server, port) = try Self.server(["/other": { .text("other\n") }])
        defer { server.shutdown() }
        let request =
            "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /other HTTP/1.1\r\nHost: x\r\n\r\n"
            + "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        let text = String(decoding: try #require(httpExchange(port: port, Array(request.utf8))), as: UTF8.self)
        let bodies = text.components(separatedBy: "\r\n\r\n").dropFirst().map { $0.prefix(6) }
        #expect(bodies.map(String.init) == ["hello\n", "other\n", "hello\n"], "\(text)")
    }

    @Test func garbageGetsA400AndTheServerGoesOn() throws {
        let (server, port) = try Self.server()
        defer { server.shutdown() }
        var generator = SeededGenerator()
        let garbage: [[UInt8]] = [
            Array("\u{0}\u{1}\u{2}GARBAGE\r\n\r\n".utf8),
            Array("GET /hello HTTP/9.9\r\n\r\n".utf8),
            Array("GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".utf8),
            Array("GET /hello HTTP/1.1\r\nX-Long: ".utf8) + [UInt8](repeating: 65, count: 200_000)
                + Array("\r\n\r\n".utf8),
            (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) },
        ]
        for bytes in garbage {
            let started = Date()
            let answer = httpExchange(port: port, bytes, timeoutSeconds: 20) ?? []
            #expect(Date().timeIntervalSince(started) < 15, "the connection is closed after garbage, not left open")
            if let reply = parseHTTPReply(answer) { #expect(reply.status == 400 || reply.status == 431, "\(reply)") }
            #expect(httpGet(port: port, "/hello")?.status == 200, "still serving after \(bytes.prefix(20))")
        }
        // A body nobody asked for is read and dropped, not kept.
        let withBody =
            Array("GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n".utf8)
            + [UInt8](repeating: 66, count: 1_000_000)
        #expect(parseHTTPReply(httpExchange(port: port, withBody) ?? [])?.status == 200)
    }

    @Test func aFloodOfIdleConnectionsIsCappedAndSurvived() throws {
        let (server, port) = try Self.server(maxConnections: 16)
        defer { server.shutdown() }
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        for _ in 0..<64 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            sockets.append(fd)
        }
        // Beyond the cap connections are closed at accept; once the idle ones go, a request is served again.
        #expect(waitFor(seconds: 10) { server.openConnections <= 16 })
        sockets.forEach { close($0) }
        sockets.removeAll()
        #expect(waitFor(seconds: 10) { httpGet(port: port, "/hello", timeoutSeconds: 2)?.status == 200 })
    }

    @Test func routesRunOffTheEventLoopOneAtATime() throws {
        let running = Atomic<Int>(0)
        let most = Atomic<Int>(0)
        let release = DispatchSemaphore(value: 0)
        let (server, port) = try Self.server([
            "/slow": {
                let now = running.wrappingAdd(1, ordering: .relaxed).newValue
                _ = most.max(now, ordering: .relaxed)
                _ = release.wait(timeout: .now() + 30)
                running.wrappingSubtract(1, ordering: .relaxed)
                return .text("slow\n")
            }
        ])
        defer { server.shutdown() }
        let group = DispatchGroup()
        for _ in 0..<3 {
            DispatchQueue.global().async(group: group) { _ = httpGet(port: port, "/slow", timeoutSeconds: 60) }
        }
        // While a route is parked on the worker thread (and two more wait for it), the event loop still answers:
        // were it blocked, the 404 would never come.
        #expect(waitFor { running.load(ordering: .relaxed) == 1 && server.openConnections >= 3 })
        #expect(httpGet(port: port, "/nothing", timeoutSeconds: 10)?.status == 404, "answered while a route is parked")
        for _ in 0..<3 { release.signal() }
        group.wait()
        #expect(most.load(ordering: .relaxed) == 1)
    }

    /// A client sending its request head a byte at a time (slowloris) kept its connection for as long as it liked:
    /// the idle timer was reset by every byte, and 128 such clients locked everyone out. A request now has to be
    /// whole within its deadline; a route slower than both timers still gets its answer out.
    @Test func aRequestTrickledAByteAtATimeIsCutOffAndASlowRouteIsNot() throws {
        let (server, port) = try Self.server(
            [
                "/slow": {
                    usleep(2_500_000)
                    return .text("slow\n")
                }
            ],
            idleTimeoutSeconds: 1,
            requestTimeoutSeconds: 1
        )
        defer { server.shutdown() }
        let socket = try #require(connectLoopback(port: port))
        defer { close(socket) }
        let started = Date()
        var closedAfter: Double?
        for byte in Array("GET /hello HTTP/1.1\r\nHost: x\r\nX-Pad: ".utf8) + [UInt8](repeating: 0x61, count: 200) {
            var one = byte
            if send(socket, &one, 1, Int32(MSG_NOSIGNAL)) != 1 || recv(socket, &one, 1, Int32(MSG_DONTWAIT)) == 0 {
                closedAfter = Date().timeIntervalSince(started)
                break
            }
            usleep(100_000)
        }
        let after = try #require(closedAfter, "the trickling connection was never closed")
        #expect(after >= 0.9 && after < 6, "closed after \(after) s")
        // The slow route: longer than both timers, answered in full.
        #expect(httpGet(port: port, "/slow", timeoutSeconds: 30)?.body == "slow\n")
    }

    /// A request followed by a shutdown of the client's sending side (as `nc` does) still gets its answer.
    @Test func aHalfClosedRequestIsAnswered() throws {
        let (server, port) = try Self.server()
        defer { server.shutdown() }
        let socket = try #require(connectLoopback(port: port))
        defer { close(socket) }
        let request = Array("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        #expect(send(socket, request, request.count, Int32(MSG_NOSIGNAL)) == request.count)
        shutdown(socket, Int32(SHUT_WR))
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(socket, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            answer += buffer[0..<count]
        }
        #expect(parseHTTPReply(answer)?.body == "hello\n", "\(String(decoding: answer, as: UTF8.self))")
    }

    @Test func aPortInUseIsAClearError() throws {
        let (first, port) = try Self.server()
        defer { first.shutdown() }
        let second = ObserveServer(host: "127.0.0.1", port: port, routes: [:], logger: Logger(label: "test"))
        defer { second.shutdown() }
        #expect {
            try second.start()
        } throws: { error in
            "\(error)".contains("cannot listen on 127.0.0.1:\(port)")
        }
    }

    /// A fatal sink error ends `walctl ship --http` with exit 1, as without `--http`: the listener's cancellation
    /// deadlocked and the process never exited (a supervisor waiting for the exit waited forever).
    @Test func aShipperThatStopsOnAFatalErrorExitsWithItsListener() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "10"]).status == 0)
        for conninfo in [
            "postgresql://shipper@127.0.0.1:notaport/db", "postgresql://shipper@127.0.0.1/db?sslmode=bogus",
        ] {
            let shipper = try ChildProcess(
                walctlPath,
                ["ship", "--dir", path, "--postgres", conninfo, "--http", "127.0.0.1:0"]
            )
            let exited = waitFor(seconds: 60) { !shipper.process.isRunning }
            #expect(exited, "still running after a fatal error: \(conninfo)")
            if !exited { shipper.kill(SIGKILL) }
            #expect(shipper.wait() == 1)
            #expect(!shipper.standardError().contains("Cannot schedule tasks"), "\(shipper.standardError())")
        }
    }

    @Test func shutdownEndsRunAndIsIdempotent() async throws {
        let (server, port) = try Self.server()
        let running = Task { try await server.run() }
        #expect(httpGet(port: port, "/hello")?.status == 200)
        server.shutdown()
        try await running.value
        server.shutdown()
        #expect(httpGet(port: port, "/hello", timeoutSeconds: 1) == nil)
    }

    @Test func listenAddresses() {
        #expect(ListenAddress("127.0.0.1:9464") == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(ListenAddress(":9464") == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(ListenAddress("9464") == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(ListenAddress("[::1]:80") == ListenAddress(host: "::1", port: 80))
        #expect(ListenAddress("0.0.0.0:80")?.isLoopback == false)
        #expect(ListenAddress("localhost:80")?.isLoopback == true)
        for bad in ["", "host:", "host:99999", "::1:80", "[::1]80", "a:b", "host:-1"] {
            #expect(ListenAddress(bad) == nil, "\(bad)")
        }
        #expect(ListenAddress("127.0.0.1.example.com:9464")?.isLoopback == false)
        #expect(ListenAddress("127.1.2.3:9464")?.isLoopback == true)
    }
}
