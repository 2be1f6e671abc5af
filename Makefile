# Conveniences. The test command itself needs only Go:
#   go test -race -count=1 -timeout 20m ./...
# (its root-package hygiene tests run go vet, staticcheck and the gofmt check).
.PHONY: test fmt vet build fuzz bench

test:
	go test -race -count=1 -timeout 20m ./...

vet:
	go vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

build:
	go build -o bin/freqd ./cmd/freqd

# Short fuzz pass over every fuzz target (FUZZTIME per target).
FUZZTIME ?= 15s
fuzz:
	@for pkg in $$(go list ./...); do \
	  for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	go test -run '^$$' -bench . -count 5 ./node/ ./partition/ ./ring/
