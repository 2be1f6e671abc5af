package membership

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// logWriter adapts memberlist's *log.Logger output to a *slog.Logger.
// memberlist writes one line per Write, shaped "[LEVEL] memberlist: text";
// the level becomes the slog level and the text the message. Lines it
// does not recognise are logged at info, whole.
type logWriter struct {
	log *slog.Logger
}

func (w logWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		level, msg := parseMemberlistLine(string(line))
		if msg != "" {
			w.log.Log(context.Background(), level, msg, slog.String("component", "memberlist"))
		}
	}
	return len(p), nil
}

// parseMemberlistLine splits one memberlist log line into level and text.
func parseMemberlistLine(line string) (slog.Level, string) {
	line = strings.TrimRight(line, "\r\n")
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			default:
				return level, line
			}
			line = strings.TrimLeft(line[end+1:], " ")
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}
