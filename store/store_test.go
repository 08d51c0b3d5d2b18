package store_test

import (
	"testing"

	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/storetest"
)

func TestMemory(t *testing.T) { storetest.Run(t, store.NewMemory()) }

func TestMemoryBatch(t *testing.T) { storetest.Batch(t, store.NewMemory()) }
