import ArgumentParser
import Logging
import WALObserve

/// Starts the HTTP listener of `walctl ship --http` and `walctl serve` on `address`: warns when other machines can
/// reach it (it has no authentication); a failure to bind is printed for `command` and exits 1. Returns the listener
/// and the port it bound (the one asked for, or the kernel's choice for port 0).
func startHTTPListener(
    _ address: ListenAddress,
    routes: [String: HTTPRoute],
    command: String,
    logger: Logger
) throws -> (server: ObserveServer, port: Int) {
    let server = ObserveServer(
        host: address.host,
        port: address.port,
        routes: routes,
        logger: Logger(label: "walctl.http")
    )
    if !address.isLoopback {
        logger.warning(
            "the HTTP listener is reachable from other machines: it has no authentication",
            metadata: ["address": "\(address)"]
        )
    }
    do {
        return (server, try server.start())
    } catch {
        Output.error("walctl \(command): --http \(address): \(error)")
        throw ExitCode(1)
    }
}
