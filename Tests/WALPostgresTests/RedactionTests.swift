import Testing

@testable import WALPostgres

@Suite struct RedactionTests {
    /// Every form libpq accepts: the redacted text is libpq's own parse, shown with password fields as ***.
    @Test(arguments: [
        ("host=db user=m password=s3cret dbname=x", "user=m password=*** dbname=x host=db"),
        (
            "postgres://metrics:s3cret@db:5432/x?sslmode=require",
            "user=metrics password=*** dbname=x host=db port=5432 sslmode=require"
        ),
        (
            "postgresql://db/x?user=m&password=s3cret&sslmode=require",
            "user=m password=*** dbname=x host=db sslmode=require"
        ),
        ("host=127.0.0.1 port=5432 user=postgres", "user=postgres host=127.0.0.1 port=5432"),
        ("host=db password='Two Words_s3cret' user=m", "user=m password=*** host=db"),
        ("host=db password = 'Spaced s3cret' user=m", "user=m password=*** host=db"),
        ("host=db password = s3cret user = m", "user=m password=*** host=db"),
        ("postgresql://m:s3cret%20pct@db/x", "user=m password=*** dbname=x host=db"),
        ("host=db password='it\\'s s3cret' sslpassword=s3cret", "password=*** host=db sslpassword=***"),
    ])
    func passwordsNeverAppearInLogs(conninfo: String, redacted: String) {
        #expect(redactConninfo(conninfo) == redacted)
        #expect(!redactConninfo(conninfo).contains("s3cret"))
    }

    /// Strings libpq cannot parse are never shown, not even in libpq's own message (which quotes them).
    @Test(arguments: [
        ("postgresql://u:Pct%zzSecret@127.0.0.1/db", "Pct%zzSecret"),
        ("postgresql://u:Secret@[::1/db", "Secret"),
        ("host=db password=Two Words_Secret", "Words_Secret"),
        ("host=db password='Unterminated_Secret", "Unterminated_Secret"),
        ("host=db bogus_Secret=1", "bogus_Secret"),
    ])
    func unparsableStringsAreNeverEchoed(conninfo: String, secret: String) throws {
        #expect(!redactConninfo(conninfo).contains(secret))
        let error = try #require(throws: PGError.self) { try Conninfo.parse(conninfo) }
        #expect(error.fatal, "an unparsable string is a configuration error")
        #expect(!error.description.contains(secret), "\(error)")
        #expect(error.description.hasPrefix("invalid connection string"))
    }

    /// A password with an unencoded `@` or `/` in a URL: libpq cuts the URL there and names the pieces in its
    /// errors (a host name, a port). No piece of the password reaches the error (found by a hostile tester).
    @Test(arguments: [
        ("postgresql://shipper:Hunter2@TailSecretPart@127.0.0.1:1/m", ["Hunter2", "TailSecretPart"]),
        ("postgresql://shipper:SlashHead/SlashTail@127.0.0.1:1/m", ["SlashHead", "SlashTail"]),
    ])
    func piecesOfAnUnencodedPasswordAreCutOutOfErrors(conninfo: String, pieces: [String]) {
        let text: String
        do {
            _ = try PGConnection.connect(conninfo, applicationName: "test")
            Issue.record("connected to \(conninfo)")
            return
        } catch {
            text = "\(error)"
        }
        for piece in pieces { #expect(!text.contains(piece), "\(text)") }
        #expect(!redactConninfo(conninfo).contains("Tail"), "\(redactConninfo(conninfo))")
    }

    @Test func secretsAreCutOutOfLibpqMessages() throws {
        let parsed = try Conninfo.parse("postgresql://u:p%40ss_S3cret@db/x")
        #expect(parsed.scrub("x p@ss_S3cret y p%40ss_S3cret z") == "x *** y *** z")
    }

    @Test(arguments: [
        ("connection to server at \"h\", port 1 failed: FATAL:  28P01:  password authentication failed", "28P01", true),
        ("connection to server at \"h\", port 1 failed: FATAL:  3D000:  database \"x\" does not exist", "3D000", true),
        ("connection to server at \"h\", port 1 failed: FATAL:  28000:  role \"x\" is not permitted", "28000", true),
        (
            "connection to server at \"h\", port 1 failed: FATAL:  53300:  sorry, too many clients already", "53300",
            false
        ),
        (
            "connection to server at \"h\", port 1 failed: FATAL:  57P03:  the database system is starting up", "57P03",
            false
        ),
        ("connection to server at \"h\", port 1 failed: FATAL:  57P01:  terminating connection", "57P01", false),
    ])
    func connectionRefusalsAreToldBySQLState(message: String, state: String, permanent: Bool) {
        let failure = ConnectFailure(libpqMessage: message + "\nLOCATION:  auth_failed, auth.c:326")
        #expect(failure.sqlState == state)
        #expect(failure.isPermanent == permanent)
        #expect(!failure.message.contains("LOCATION") && !failure.message.contains("\(state):"), "\(failure.message)")
    }

    @Test func networkFailuresAreRetriedAndBadOptionValuesAreNot() {
        let refused = ConnectFailure(
            libpqMessage: "connection to server at \"127.0.0.1\", port 1 failed: Connection refused"
        )
        #expect(refused.sqlState == nil && !refused.isPermanent)
        #expect(ConnectFailure(libpqMessage: "invalid sslmode value: \"wat\"").isPermanent)
    }

    @Test func transientAndPermanentErrorsAreTold() {
        #expect(PGError(message: "x", connectionLost: true).isTransient)
        #expect(PGError(message: "x", sqlState: "57P01").isTransient, "admin shutdown")
        #expect(PGError(message: "x", sqlState: "57014").isTransient, "statement timeout")
        #expect(PGError(message: "x", sqlState: "40001").isTransient, "serialization failure")
        #expect(PGError(message: "x", sqlState: "08006").isTransient, "connection failure")
        #expect(!PGError(message: "x", sqlState: "23505").isTransient, "unique violation")
        #expect(!PGError(message: "x", sqlState: "22001").isTransient, "string too long")
        #expect(!PGError(message: "x", fatal: true).isTransient)
        #expect(!PGError(message: "x", sqlState: "28P01", connectionLost: true, fatal: true).isTransient)
    }
}
