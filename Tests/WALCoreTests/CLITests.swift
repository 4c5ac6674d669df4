import Foundation
import Synchronization
import Testing
import WALCore
import WALTestKit

/// walctl end to end, through the built executable.
@Suite struct CLITests {
    @Test func emitPrintsAckedEveryTenThousandAndDone() throws {
        try withTemporaryDirectory { directory in
            let result = try walctl(["emit", "--dir", directory.file("log"), "--count", "25000", "--threads", "2"])
            #expect(result.status == 0)
            let lines = result.out.split(separator: "\n")
            #expect(lines.filter { $0.hasPrefix("acked ") }.count == 2)
            #expect(lines.last == "done 25000")
            #expect(result.err.contains("records/s"))
        }
    }

    @Test func inspectJSONHasTheDocumentedFields() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            _ = try walctl(["emit", "--dir", path, "--count", "5000", "--raw"])
            try CursorStore(path: path).store("postgres", seq: 1234)
            let result = try walctl(["inspect", path, "--json"])
            #expect(result.status == 0)
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any]
            )
            for key in [
                "segments", "frames", "records", "first_seq", "last_seq", "bytes_on_disk", "bytes_allocated",
                "bytes_raw", "corrupt_frames", "torn_tail_bytes", "gaps", "cursors",
            ] {
                #expect(object[key] != nil, "missing \(key)")
            }
            #expect(object["records"] as? Int == 5000)
            #expect(object["first_seq"] as? Int == 1)
            #expect(object["last_seq"] as? Int == 5000)
            #expect((object["cursors"] as? [String: Int])?["postgres"] == 1234)
            #expect((object["bytes_on_disk"] as? Int ?? 0) < (object["bytes_allocated"] as? Int ?? 0))
            #expect((object["bytes_raw"] as? Int) == 5000 * 100)
        }
    }

    @Test func inspectTableIsReadable() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            _ = try walctl(["emit", "--dir", path, "--count", "100"])
            let result = try walctl(["inspect", path])
            #expect(result.status == 0)
            #expect(result.out.contains("records           100"))
            #expect(result.out.contains("sequence          1 ... 100"))
        }
    }

    @Test(arguments: [
        ["verify"],
        ["verify", "/tmp", "--bogus"],
        ["emit", "--dir", "/tmp/x", "--count", "10", "--threads", "0"],
        ["emit", "--dir", "/tmp/x", "--count", "10", "--durability", "fast"],
        ["nonsense"],
        ["ship", "--dir", "/tmp/x", "--alerts", "/tmp/x.yaml", "--alert-budget", "0"],
        // Numbers the writer would overflow on (they trapped, exit 132), refused up front.
        ["emit", "--dir", "/nonexistent/x", "--count", "10", "--durability", "periodic:19000000000000"],
        [
            "emit", "--dir", "/nonexistent/x", "--count", "10", "--segment-size", "4611686018427387904", "--max-bytes",
            "200000000",
        ],
        ["emit", "--dir", "/nonexistent/x", "--count", "10", "--rate", "nan"],
        ["emit", "--dir", "/nonexistent/x", "--count", "100", "--rate", "1e-300"],
        ["demo", "--dir", "/nonexistent/x", "--rate", "1e300"],
        ["ship", "--dir", "/tmp/x", "--postgres", "x", "--flush-interval-ms", "99999999999999"],
        ["tail", "/nonexistent/x", "-n", "9223372036854775807"],
    ])
    func usageErrorsExitTwo(arguments: [String]) throws {
        let result = try walctl(arguments)
        #expect(result.status == 2, "\(arguments): \(result.err)")
        #expect(!result.err.isEmpty)
    }

    @Test func inspectAndVerifyOnAMissingLogExitOneWithAClearMessage() throws {
        try withTemporaryDirectory { directory in
            for command in ["inspect", "verify"] {
                let result = try walctl([command, directory.file("nothing-here")])
                #expect(result.status == 1)
                #expect(result.err.contains("not a log directory") || result.err.contains("no such"))
            }
        }
    }

    @Test func helpDocumentsExitCodesAndExamples() throws {
        let verify = try walctl(["verify", "--help"])
        #expect(verify.status == 0)
        let text = verify.out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(text.contains("exit 0 sound, 1 damaged, 2 usage"))
        #expect(text.contains("--repair"))
        for command in ["emit", "inspect", "tail", "replay", "verify", "stats", "ship"] {
            let help = try walctl([command, "--help"])
            #expect(help.status == 0)
            #expect(help.out.contains("Examples:"), "\(command)")
            #expect(help.out.contains("Exit codes"), "\(command)")
        }
    }

    @Test func inspectWorksOnALogBeingWritten() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let writer = try ChildProcess.endlessWriter(path, rate: 200000)
            defer { writer.kill() }
            _ = writer.readLine()
            var previous: UInt64 = 0
            for _ in 0..<8 {
                let result = try walctl(["inspect", path, "--json"])
                #expect(result.status == 0)
                let object = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any]
                let last = UInt64(object?["last_seq"] as? Int ?? 0)
                #expect(object?["writer_pid"] as? Int == Int(writer.pid))
                #expect((object?["corrupt_frames"] as? Int) == 0)
                #expect(last >= previous)
                previous = last
                #expect(try walctl(["verify", path]).status == 0)
            }
        }
    }

    /// Damage in the last segment (garbage, or zeros as a page lost to a power failure leaves) over a frame
    /// header: readers read on past it (resynchronising) and show what follows; and once a writer appends to that
    /// log again (after the last valid frame, the damage left in place), they still stop at the end as it stood
    /// instead of chasing the writer. (Reviewers found the zeros case cut short, then the chase after it.)
    @Test(arguments: [UInt8(0xA5), 0x00])
    func damageInTheLastSegmentNeitherEndsTheReadNorLetsItChaseAWriter(fill: UInt8) throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "20000"]).status == 0)
            #expect(try LogInspector.sealedEnd(path: path) == 20000)
            let segment = try #require(try LogDirectory(path: path).segments().last).path
            let handle = try #require(FileHandle(forUpdatingAtPath: segment))
            try handle.seek(toOffset: 64)  // the first frame's header, whole
            handle.write(Data(repeating: fill, count: 64))
            try handle.close()
            #expect(try LogInspector.sealedEnd(path: path) == 20000)
            for command in [["inspect", path, "--records", "--json"], ["replay", path, "--to", "stdout"]] {
                let result = try walctl(command)
                #expect(result.err.contains("damage"), "\(result.err)")
                let lines = result.out.split(separator: "\n").count
                #expect(lines > 10000 && lines < 20000, "\(command[0]): \(lines) records after the first frame")
            }
            let writer = try ChildProcess(walctlPath, ["emit", "--dir", path, "--count", "1000000000"])
            defer { writer.kill() }
            #expect(writer.readLine()?.hasPrefix("acked") == true)
            let read = try readBesideTheWriter(["inspect", path, "--records", "--json"])
            #expect(read.finished, "still reading after 60 s beside the writer")
        }
    }

    /// `stats`, `replay --to stdout` and `inspect --records` of a log being written read the log as it stood when
    /// they started. Before, they read on for as long as the writer kept ahead of them: beside a writer at full
    /// speed they did not return until it stopped (each command here starts when the log holds about 10,000 records,
    /// which it reads in a few seconds).
    @Test(arguments: [["stats"], ["replay", "--to", "stdout"], ["inspect", "--records", "--json"]])
    func aReaderOfALogBeingWrittenStopsAtItsEndAsOfItsStart(command: [String]) throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let writer = try ChildProcess(walctlPath, ["emit", "--dir", path, "--count", "1000000000"])
            defer { writer.kill() }
            #expect(writer.readLine()?.hasPrefix("acked") == true)
            let before = try #require(try LogInspector.sealedEnd(path: path))
            let read = try readBesideTheWriter([command[0], path] + command.dropFirst())
            #expect(read.finished, "walctl \(command[0]) still reading after 60 s beside the writer")
            let after = try #require(try LogInspector.sealedEnd(path: path))
            if command[0] != "stats" {
                // One line per record, up to the log's end at the start (which lies in between).
                let count = UInt64(read.lines)
                #expect(count >= before && count <= after, "\(count) lines, log end \(before) then \(after)")
            }
        }
    }

    /// Runs walctl with `arguments` for up to 60 s (killed after): whether it ended by itself (with status 0), and
    /// the lines it printed.
    func readBesideTheWriter(_ arguments: [String]) throws -> (finished: Bool, lines: Int) {
        let reader = try ChildProcess(walctlPath, arguments)
        let lines = Mutex(0)
        let ended = DispatchSemaphore(value: 0)
        Thread {
            while reader.readLine() != nil { lines.withLock { $0 += 1 } }
            ended.signal()
        }.start()
        let finished = ended.wait(timeout: .now() + 60) == .success
        if !finished { reader.kill() }
        let status = reader.wait()
        #expect(!finished || status == 0, "\(reader.standardError())")
        return (finished, lines.withLock { $0 })
    }
}
